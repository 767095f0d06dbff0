package main

import (
	"runtime"
	"syscall"
	"time"
)

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK.
const prSetTimerSlack = 29

// spinBefore is how long before a due time the timetable stops sleeping and
// watches the clock instead: a little more than nanosleep's usual overshoot
// on a VM once the timer slack is 1 ns (measured 50-80 µs here).
const spinBefore = 100 * time.Microsecond

// preciseWaiter waits for the open loop's due times on its own OS thread.
//
// Go's timers cannot keep a 1 ms timetable on Linux: when every goroutine is
// idle the runtime waits in epoll with a timeout in whole milliseconds, so a
// time.Timer fires up to 1 ms late (measured here: p50 0.55 ms, p90 0.99 ms
// late). That lateness is the client's, yet in an open-loop test it counts in
// every request's latency. nanosleep on a locked thread with a 1 ns timer
// slack wakes within ~60 µs; the last stretch is spent watching the clock.
type preciseWaiter struct{}

// newWaiter locks the calling goroutine to its thread for the rest of the
// timetable: call it from the goroutine that runs the timetable, and call
// release when done.
func newWaiter() waiter {
	runtime.LockOSThread()
	// Best effort: without it the wait is merely 50 µs coarser.
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	return preciseWaiter{}
}

func (preciseWaiter) until(at time.Time, done <-chan struct{}) bool {
	for {
		d := time.Until(at)
		if d <= 0 {
			return true
		}
		select {
		case <-done:
			return false
		default:
		}
		if d > spinBefore {
			// Sleep in slices of at most 50 ms so a cancellation is seen.
			ts := syscall.NsecToTimespec(int64(min(d-spinBefore, 50*time.Millisecond)))
			_ = syscall.Nanosleep(&ts, nil) // EINTR: the loop re-checks
			continue
		}
		for time.Now().Before(at) {
		}
		return true
	}
}

func (preciseWaiter) release() { runtime.UnlockOSThread() }
