// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 the
// same way upstream's server/main.go does. test/tools/install.sh builds it
// for the envtest control plane used by the integration tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
