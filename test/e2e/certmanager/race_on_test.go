//go:build race

package certmanager

const raceEnabled = true
