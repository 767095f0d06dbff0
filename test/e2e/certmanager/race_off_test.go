//go:build !race

package certmanager

const raceEnabled = false
