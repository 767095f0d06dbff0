// Package node is the node tier: the injector's pods run for real, on a
// kubelet built from k8s.io/kubernetes with Debian's containerd, runc and
// CNI plugins, joined to the kube-apiserver and etcd of test/e2e
// (test/node/nodeharness; docs/node.md). The proxy container runs the
// Envoy STAND-IN (test/node/standin): there is no Envoy binary here.
//
// Prerequisites: root, `bash test/tools/install.sh` (apt packages and the
// builds). Missing ones skip the tests with a one-line reason, or fail them
// when CI is set.
//
//	eval "$(bash test/tools/install.sh --print-env)"
//	go test -race ./test/node/...
package node

import (
	"os"
	"testing"

	"github.com/sidecar-injector/injector/test/node/nodeharness"
)

func TestMain(m *testing.M) { os.Exit(nodeharness.Main(m)) }
