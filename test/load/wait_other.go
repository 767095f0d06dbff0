//go:build !linux

package main

import "time"

// timerWaiter waits with a Go timer: elsewhere than Linux the timetable is
// only as precise as the runtime's timers.
type timerWaiter struct{ t *time.Timer }

func newWaiter() waiter { return &timerWaiter{t: time.NewTimer(time.Hour)} }

func (w *timerWaiter) until(at time.Time, done <-chan struct{}) bool {
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	w.t.Reset(d)
	select {
	case <-w.t.C:
		return true
	case <-done:
		return false
	}
}

func (w *timerWaiter) release() { w.t.Stop() }
