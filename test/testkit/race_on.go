//go:build race

package testkit

// RaceEnabled reports whether the race detector is on: tiers that measure
// or build binaries adjust (slower timings, a race-enabled binary).
const RaceEnabled = true
