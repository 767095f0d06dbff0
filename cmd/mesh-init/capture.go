package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// captureTimeout bounds the whole run: a pod whose init container hangs is
// worse than one that fails with a message.
const captureTimeout = 2 * time.Minute

// captureMain is `mesh-init capture`: parse (flags and MESH_INIT_* env),
// execute, map the error to an exit code.
func captureMain(args []string, stdout, stderr io.Writer) int {
	cmd, err := meshinit.ParseCaptureCommand(args, os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		capture.PrintUsage(stdout)
		return capture.ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "mesh-init capture: %v\n", err)
		return capture.ExitCode(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, captureTimeout)
	defer cancel()
	if err := capture.Execute(ctx, cmd, capture.NewHost(stdout, stderr)); err != nil {
		fmt.Fprintf(stderr, "mesh-init capture: %v\n", err)
		return capture.ExitCode(err)
	}
	return capture.ExitOK
}
