package standin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
)

// Options are Envoy's command-line options as the injector renders them
// (webhook/inject/engine.go proxyArgs).
type Options struct {
	ConfigPath        string
	LogLevel          string
	Concurrency       int
	DrainTimeSeconds  int
	DrainStrategy     string
	DisableHotRestart bool
	ServiceCluster    string
	ServiceNode       string
}

// Envoy's accepted values (envoy --help).
var (
	logLevels      = []string{"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}
	drainStrategys = []string{"gradual", "immediate"}
)

// ParseFlags parses Envoy's flags. As in Envoy, an unknown flag or a stray
// argument is an error, so a rendering the real Envoy would refuse is
// refused here too.
func ParseFlags(args []string, stderr io.Writer) (Options, error) {
	o := Options{LogLevel: "info", DrainTimeSeconds: 600, DrainStrategy: "gradual"}
	fs := flag.NewFlagSet("envoy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range []string{"config-path", "c"} {
		fs.StringVar(&o.ConfigPath, n, "", "path to the bootstrap (JSON)")
	}
	for _, n := range []string{"log-level", "l"} {
		fs.StringVar(&o.LogLevel, n, o.LogLevel, "log level")
	}
	fs.IntVar(&o.Concurrency, "concurrency", 0, "worker threads (accepted; the stand-in uses goroutines)")
	fs.IntVar(&o.DrainTimeSeconds, "drain-time-s", o.DrainTimeSeconds, "drain time in seconds (drain_listeners?graceful)")
	fs.StringVar(&o.DrainStrategy, "drain-strategy", o.DrainStrategy, "gradual or immediate")
	fs.BoolVar(&o.DisableHotRestart, "disable-hot-restart", false, "accepted; the stand-in never hot-restarts")
	fs.StringVar(&o.ServiceCluster, "service-cluster", "", "local service cluster")
	fs.StringVar(&o.ServiceNode, "service-node", "", "local service node")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case o.ConfigPath == "":
		return o, errors.New("--config-path is required (the stand-in has no inline configuration)")
	case !slices.Contains(logLevels, o.LogLevel):
		return o, fmt.Errorf("--log-level %q: want one of %v", o.LogLevel, logLevels)
	case !slices.Contains(drainStrategys, o.DrainStrategy):
		return o, fmt.Errorf("--drain-strategy %q: want one of %v", o.DrainStrategy, drainStrategys)
	case o.Concurrency < 0:
		return o, fmt.Errorf("--concurrency %d: must not be negative", o.Concurrency)
	case o.DrainTimeSeconds < 0:
		return o, fmt.Errorf("--drain-time-s %d: must not be negative", o.DrainTimeSeconds)
	}
	return o, nil
}
