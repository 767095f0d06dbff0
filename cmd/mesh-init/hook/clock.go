package hook

import (
	"context"
	"time"
)

// clock is the hook's only view of time: every sleep, pause, bound and
// duration on a log line goes through it. Main uses the real one; tests
// hand in a fake one, so retries, backoff, budgets and the drain sleep are
// proven by the durations the hook asks for and the order of its requests,
// not by how fast a shared machine happens to run.
type clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends; it reports whether the whole d
	// passed. It never returns early for any other reason.
	Sleep(ctx context.Context, d time.Duration) bool
	// WithTimeout is context.WithTimeout measured on this clock: the
	// context ends with context.DeadlineExceeded when d has passed.
	WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc)
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (realClock) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// since is the time passed on t's clock since start.
func (t *tool) since(start time.Time) time.Duration { return t.clock.Now().Sub(start) }
