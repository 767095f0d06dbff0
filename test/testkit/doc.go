// Package testkit is the one kit the tests of every tier share: golden
// files with one -update switch and a check for golden files no test
// compares any more (Golden, Main), skipping or failing on a missing
// prerequisite (Need), whether the race detector is on (RaceEnabled), and
// an HTTPS server with its own CA (TLSServer), and the one knob that
// scales every tier's deadline on a slow machine (Deadline,
// TEST_DEADLINE_SCALE). Pod fixtures of the core are in the podcases
// subpackage.
//
// It imports the standard library only, so the tests of mesh-init and its
// contract use it without pulling anything else in. Production code never
// imports anything under test/ (test/walls_test.go checks it).
package testkit
