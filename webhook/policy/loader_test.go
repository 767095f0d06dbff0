package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/test/testkit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// deadline bounds the waits for the file watcher (which polls every 20 ms
// here): generous, it says how long to wait, not how fast the watcher
// must be. TEST_DEADLINE_SCALE raises it on a slower machine.
var deadline = testkit.Deadline(time.Minute)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

const fileHeader = "apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\n"

// A file that disappears and comes back with the content in force clears
// the error: nothing to swap, and readiness and the metric recover.
func TestLoaderRecoversFromTransientErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, fileHeader+"defaults: {settings: {proxy: {logLevel: info}}}\n")
	var mu sync.Mutex
	var calls []string
	builds := 0
	l := &policy.Loader[*policy.Config]{Path: path, Poll: 20 * time.Millisecond,
		Build: func(c *policy.Config) (*policy.Config, error) { mu.Lock(); builds++; mu.Unlock(); return c, nil }}
	_, err := l.Load()
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Watch(ctx, func(c *policy.Config, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			calls = append(calls, "error")
		case c != nil:
			calls = append(calls, "config")
		default:
			calls = append(calls, "recovered")
		}
	})
	content, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.Remove(path))
	require.Eventually(t, func() bool { return l.LastError() != nil }, deadline, 10*time.Millisecond, "the watcher to see the file gone")
	require.NoError(t, os.WriteFile(path, content, 0o644))
	// The second call, not LastError: Watch clears the error before it
	// calls apply, so the error alone can be seen cleared before the call.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) >= 2
	}, deadline, 10*time.Millisecond, "the watcher to see the file back")
	require.NoError(t, l.LastError())
	cancel()
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"error", "recovered"}, calls, "the same content is not compiled or swapped again")
	assert.Equal(t, 1, builds)
}

// A file that parses but does not build (for the injector: an Envoy
// bootstrap Envoy would refuse) fails the load like a parse error, names
// the file, and leaves nothing half-built.
func TestLoaderBuildErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, fileHeader)
	l := &policy.Loader[*policy.Config]{Path: path,
		Build: func(*policy.Config) (*policy.Config, error) { return nil, assert.AnError }}
	c, err := l.Load()
	require.ErrorIs(t, err, assert.AnError)
	assert.Nil(t, c)
	assert.Contains(t, err.Error(), path+": ")
	assert.Equal(t, err, l.LastError())

	writeFile(t, path, " \n")
	l.Build = func(c *policy.Config) (*policy.Config, error) { return c, nil }
	_, err = l.Load()
	assert.ErrorContains(t, err, "is empty; a policy file needs at least apiVersion and kind")

	builtin := &policy.Loader[*policy.Config]{Build: l.Build}
	c, err = builtin.Load()
	require.NoError(t, err)
	assert.Equal(t, policy.DefaultPolicyName, c.Default.Name, "no path: the built-in defaults")
}
