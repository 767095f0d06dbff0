// Command kube-apiserver is a copy of k8s.io/kubernetes/cmd/kube-apiserver's
// main package. It exists so that this wrapper module has a real, vet-able
// main package that pins every dependency kube-apiserver needs in go.mod and
// go.sum.
//
// test/tools/install.sh does not build this package; it builds the upstream
// command directly from within this module:
//
//	go build -o kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
//
// (see tools.go, which keeps that package in the module graph).
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
