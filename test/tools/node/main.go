// Command node is a copy of k8s.io/kubernetes/cmd/kubelet's main package. It
// exists so that this wrapper module has a real, vet-able main package.
//
// test/tools/install.sh does not build this package; it builds the upstream
// commands directly from within this module (see tools.go).
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // for client metric registration
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	command := app.NewKubeletCommand(context.Background())
	code := cli.Run(command)
	os.Exit(code)
}
