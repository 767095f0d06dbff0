// Command envoy-standin is the node tier's Envoy STAND-IN (package
// test/node/standin): the injected proxy container runs it because there is
// no Envoy binary on these machines. It is not Envoy.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/sidecar-injector/injector/test/node/standin"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(standin.Main(os.Args[1:], os.Stdout, os.Stderr, sig))
}
