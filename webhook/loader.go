package webhook

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sidecar-injector/injector/webhook/config"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// Loader builds engines from the policy file (or the built-in defaults) and
// watches the file for changes. A ConfigMap-mounted file changes by a
// symlink swap, so the file is re-read by path on every poll.
type Loader struct {
	// Path is the policy file; "" uses the built-in defaults.
	Path string
	// Options are passed to every engine.
	Options inject.Options
	// Poll is how often Watch reads the file (default 2s).
	Poll time.Duration

	mu       sync.Mutex
	lastData []byte // the content last compiled, good or bad
	goodData []byte // the content of the configuration in force
	lastErr  error
}

// Load reads and compiles the configuration.
func (l *Loader) Load() (*inject.Engine, error) {
	var data []byte
	if l.Path != "" {
		var err error
		if data, err = os.ReadFile(l.Path); err != nil {
			return nil, l.fail(nil, fmt.Errorf("--config: %w", err))
		}
	}
	return l.load(data)
}

// load compiles content read from the file (or nothing, for the built-in
// defaults), remembering it so Watch only reloads real changes.
func (l *Loader) load(data []byte) (*inject.Engine, error) {
	// An empty file is caught mid-write or wrongly emptied; taking it for
	// "built-in defaults" would silently change every namespace.
	if l.Path != "" && len(bytes.TrimSpace(data)) == 0 {
		return nil, l.fail(data, fmt.Errorf("%s is empty; a policy file needs at least apiVersion and kind", l.Path))
	}
	e, err := Compile(data, l.Options)
	if err != nil {
		if l.Path != "" {
			err = fmt.Errorf("%s: %w", l.Path, err)
		}
		return nil, l.fail(data, err)
	}
	l.mu.Lock()
	l.lastData, l.goodData, l.lastErr = data, data, nil
	l.mu.Unlock()
	return e, nil
}

func (l *Loader) fail(data []byte, err error) error {
	l.mu.Lock()
	l.lastData, l.lastErr = data, err
	l.mu.Unlock()
	return err
}

// LastError is the error of the last load, nil after a success.
func (l *Loader) LastError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// Compile builds an engine from policy file content (nil or empty for the
// built-in defaults), validating every Envoy bootstrap against Envoy's schema.
func Compile(data []byte, opts inject.Options) (*inject.Engine, error) {
	cfg := config.BuiltinConfig()
	if len(bytes.TrimSpace(data)) > 0 {
		var err error
		if cfg, err = config.Parse(data); err != nil {
			return nil, err
		}
	}
	return inject.New(cfg, opts)
}

// Watch polls the file until ctx ends and calls apply with each new engine,
// or with the error when a changed file does not compile (the caller keeps
// the previous engine), or with neither when the file is back to the
// content already in force after an error (nothing to swap; the error is
// cleared).
func (l *Loader) Watch(ctx context.Context, apply func(*inject.Engine, error)) {
	if l.Path == "" {
		return
	}
	poll := l.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(l.Path)
		l.mu.Lock()
		unchanged := err == nil && bytes.Equal(data, l.lastData)
		recovered := err == nil && l.lastErr != nil && bytes.Equal(data, l.goodData)
		if recovered {
			l.lastData, l.lastErr = data, nil
		}
		l.mu.Unlock()
		if recovered {
			apply(nil, nil)
			continue
		}
		if unchanged {
			continue
		}
		if err != nil {
			if l.LastError() == nil {
				apply(nil, l.fail(l.lastData, fmt.Errorf("--config: %w", err)))
			}
			continue
		}
		e, err := l.load(data)
		apply(e, err)
	}
}
