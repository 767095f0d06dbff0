package webhook

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/inject/injecttest"
)

// A file that disappears and comes back with the content in force clears
// the error: nothing to swap, and readiness and the metric recover.
func TestLoaderRecoversFromTransientErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, path, "info", 11)
	l := &Loader{Path: path, Options: injecttest.Options(false), Poll: 20 * time.Millisecond}
	_, err := l.Load()
	require.NoError(t, err)

	var mu sync.Mutex
	var calls []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Watch(ctx, func(e *inject.Engine, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			calls = append(calls, "error")
		case e != nil:
			calls = append(calls, "engine")
		default:
			calls = append(calls, "recovered")
		}
	})
	content, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.Remove(path))
	require.Eventually(t, func() bool { return l.LastError() != nil }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, os.WriteFile(path, content, 0o644))
	require.Eventually(t, func() bool { return l.LastError() == nil }, 5*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"error", "recovered"}, calls, "the same content is not compiled or swapped again")
}
