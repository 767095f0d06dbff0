// Package podcases loads the pod fixtures of the core
// (webhook/inject/testdata/pods) that the core's golden tests, the
// webhook's handler tests, the CLI's equivalence tests, the end-to-end
// fixture test and the fuzz seeds share, and cuts objects down to a read
// set (Project). It is part of the test kit: tests import it, production
// code never does.
package podcases
