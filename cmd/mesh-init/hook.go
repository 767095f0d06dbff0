package main

import (
	"os"

	"github.com/sidecar-injector/injector/cmd/mesh-init/hook"
)

// hookMain is `mesh-init hook ...`: the lifecycle hook tool run by the app
// and sidecar containers' preStop/postStart hooks (see docs/lifecycle-hooks.md).
func hookMain(args []string) int { return hook.Main(args, os.Stdout, os.Stderr) }
