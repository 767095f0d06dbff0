package policy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// Loader reads the policy file (or takes the built-in defaults), turns it
// into what its caller serves with (Build: the injector compiles an
// inject.Engine), and watches the file for changes. A ConfigMap-mounted
// file changes by a symlink swap, so the file is re-read by path on every
// poll. The server and the offline commands share it, so a file means the
// same to both (an empty file, for one, is an error in both).
//
// It is generic so that this package, which the core imports, needs
// nothing from the core.
type Loader[T any] struct {
	// Path is the policy file; "" uses the built-in defaults.
	Path string
	// Poll is how often Watch reads the file (default 2s).
	Poll time.Duration
	// Build turns a parsed file into what the caller serves with; its
	// error fails the load like a parse error.
	Build func(*Config) (T, error)

	mu       sync.Mutex
	lastData []byte // the content last built, good or bad
	goodData []byte // the content of the configuration in force
	lastErr  error
}

// ParseFile parses a policy file's content, or returns the built-in
// defaults when there is none (nil or only white space).
func ParseFile(data []byte) (*Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return BuiltinConfig(), nil
	}
	return Parse(data)
}

// Load reads and builds the configuration.
func (l *Loader[T]) Load() (T, error) {
	var data []byte
	if l.Path != "" {
		var err error
		if data, err = os.ReadFile(l.Path); err != nil {
			var zero T
			return zero, l.fail(nil, fmt.Errorf("--config: %w", err))
		}
	}
	return l.load(data)
}

// load builds content read from the file (or nothing, for the built-in
// defaults), remembering it so Watch only reloads real changes.
func (l *Loader[T]) load(data []byte) (T, error) {
	var zero T
	// An empty file is caught mid-write or wrongly emptied; taking it for
	// "built-in defaults" would silently change every namespace.
	if l.Path != "" && len(bytes.TrimSpace(data)) == 0 {
		return zero, l.fail(data, fmt.Errorf("%s is empty; a policy file needs at least apiVersion and kind", l.Path))
	}
	cfg, err := ParseFile(data)
	var v T
	if err == nil {
		v, err = l.Build(cfg)
	}
	if err != nil {
		if l.Path != "" {
			err = fmt.Errorf("%s: %w", l.Path, err)
		}
		return zero, l.fail(data, err)
	}
	l.mu.Lock()
	l.lastData, l.goodData, l.lastErr = data, data, nil
	l.mu.Unlock()
	return v, nil
}

func (l *Loader[T]) fail(data []byte, err error) error {
	l.mu.Lock()
	l.lastData, l.lastErr = data, err
	l.mu.Unlock()
	return err
}

// LastError is the error of the last load, nil after a success.
func (l *Loader[T]) LastError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// Watch polls the file until ctx ends and calls apply with each newly built
// value, or with the error when a changed file does not build (the caller
// keeps what it has), or with neither (the zero T and nil) when the file is
// back to the content already in force after an error (nothing to swap;
// the error is cleared).
func (l *Loader[T]) Watch(ctx context.Context, apply func(T, error)) {
	if l.Path == "" {
		return
	}
	poll := l.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	var zero T
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
			apply(zero, nil)
			continue
		}
		if unchanged {
			continue
		}
		if err != nil {
			if l.LastError() == nil {
				apply(zero, l.fail(l.lastData, fmt.Errorf("--config: %w", err)))
			}
			continue
		}
		v, err := l.load(data)
		apply(v, err)
	}
}
