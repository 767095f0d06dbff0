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

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/cmd/mesh-init/validate"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// validateMain is `mesh-init validate`, the init container of the cni
// capture mode: the same arguments as `capture` (the injector renders them
// with the same contract), but instead of writing rules, which needs
// NET_ADMIN, it installs the hook tool and the bootstrap and then proves,
// unprivileged, that the node's mesh-cni plugin wrote them.
func validateMain(args []string, stdout, stderr io.Writer) int {
	cmd, err := meshinit.ParseCaptureCommand(args, os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: mesh-init validate [the flags of mesh-init capture]\n\n"+
			"Installs the hook tool (--copy-self-to) and the proxy's bootstrap, then checks from inside the pod,\n"+
			"without privileges, that the capture rules the flags describe are in place (written by the node's\n"+
			"mesh-cni plugin). Exit codes: 0 in place, 1 failure (or settings it cannot test), 2 invalid arguments,\n"+
			"%d rules missing, %d interrupted before it concluded, %d rules written for other settings (the annotation was changed).\n",
			validate.ExitNotCaptured, validate.ExitInterrupted, validate.ExitSettingsDiffer)
		return capture.ExitOK
	}
	if err == nil && (cmd.DryRun || cmd.Cleanup) {
		err = &meshinit.UsageError{Err: errors.New("--dry-run and --cleanup belong to mesh-init capture, not validate")}
	}
	if err != nil {
		fmt.Fprintf(stderr, "mesh-init validate: %v\n", err)
		return validate.ExitCode(err)
	}
	// A stop (the pod deleted meanwhile) ends the check with its own exit
	// code and message, never "the rules are missing".
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if s, ok := <-sigs; ok {
			cancel(fmt.Errorf("%v received", s))
		}
	}()
	h := capture.NewHost(stdout, stderr)
	if err := capture.Prepare(cmd, h); err != nil {
		fmt.Fprintf(stderr, "mesh-init validate: %v\n", err)
		return capture.ExitCode(err)
	}
	err = validate.Run(ctx, validate.Options{Capture: cmd.Config, ReadFile: os.ReadFile, Prefixes: validate.Prefixes,
		Record: capture.ReadLoopbackAlias, Log: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "mesh-init validate: %v\n", err)
	}
	return validate.ExitCode(err)
}
