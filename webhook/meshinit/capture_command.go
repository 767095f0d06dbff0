package meshinit

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// CaptureCommand is one invocation of `mesh-init capture`: the capture
// settings plus what to do with them.
type CaptureCommand struct {
	Config CaptureConfig
	// DryRun prints the restore input for both families and changes
	// nothing (no rules, no copy).
	DryRun bool
	// Cleanup removes mesh-init's chains and jumps instead of writing them.
	Cleanup bool
	// CopySelfTo, when set, is where the running binary is copied (before
	// any rule is written) so other containers can run `mesh-init hook`.
	CopySelfTo string
	// EnvoyBootstrap is the proxy's bootstrap as EncodeFile gives it, and
	// EnvoyBootstrapTo the file it is written to (before any rule), where
	// the proxy reads it. The injector validated it against Envoy's schema;
	// it travels compressed so every pod's spec stays small.
	EnvoyBootstrap   string
	EnvoyBootstrapTo string
}

// The flags ParseCaptureCommand accepts besides the CaptureConfig flags.
const (
	FlagDryRun     = "dry-run"
	FlagCleanup    = "cleanup"
	FlagCopySelfTo = "copy-self-to"
	// FlagEnvoyBootstrap and FlagEnvoyBootstrapTo carry the proxy's
	// bootstrap (see CaptureCommand).
	FlagEnvoyBootstrap   = "envoy-bootstrap"
	FlagEnvoyBootstrapTo = "envoy-bootstrap-to"
)

// Args renders the command as arguments for `mesh-init capture`: every
// CaptureConfig flag (CaptureConfig.Args) followed by the command flags
// that are set. ParseCaptureCommand(c.Args(), nil) returns c.
func (c CaptureCommand) Args() []string {
	out := c.Config.Args()
	if c.DryRun {
		out = append(out, "--"+FlagDryRun)
	}
	if c.Cleanup {
		out = append(out, "--"+FlagCleanup)
	}
	if c.CopySelfTo != "" {
		out = append(out, "--"+FlagCopySelfTo+"="+c.CopySelfTo)
	}
	if c.EnvoyBootstrapTo != "" {
		out = append(out, "--"+FlagEnvoyBootstrapTo+"="+c.EnvoyBootstrapTo, "--"+FlagEnvoyBootstrap+"="+c.EnvoyBootstrap)
	}
	return out
}

// FlagError is an invalid flag or environment variable value.
type FlagError struct {
	Flag  string // flag name without dashes
	Env   string // the environment variable, when the value came from one
	Value string
	Err   error
}

func (e *FlagError) Error() string {
	if e.Env != "" {
		return fmt.Sprintf("invalid value %q for %s (--%s): %v", e.Value, e.Env, e.Flag, e.Err)
	}
	return fmt.Sprintf("invalid value %q for --%s: %v", e.Value, e.Flag, e.Err)
}

func (e *FlagError) Unwrap() error { return e.Err }

// UsageError is any other invalid invocation (unknown flag, stray argument,
// settings that contradict each other).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// recordingValue adapts a setter to flag.Value and keeps the first error
// as a FlagError, so the message can name the flag the way users write it
// (--name) rather than the way package flag does (-name).
type recordingValue struct {
	name string
	get  func() string
	set  func(string) error
	bool bool
	err  **FlagError
}

func (v *recordingValue) String() string {
	if v.get == nil {
		return ""
	}
	return v.get()
}

func (v *recordingValue) Set(s string) error {
	if err := v.set(s); err != nil {
		if *v.err == nil {
			*v.err = &FlagError{Flag: v.name, Value: s, Err: err}
		}
		return err
	}
	return nil
}

func (v *recordingValue) IsBoolFlag() bool { return v.bool }

// parseSettings applies environment variables (through lookup, nil for
// none) and then args to settings, returning the arguments left after the
// flags. Errors are *FlagError or *UsageError, or flag.ErrHelp.
func parseSettings(name string, settings []setting, args []string, lookup func(string) (string, bool)) ([]string, error) {
	if lookup != nil {
		var errs []error
		for _, s := range settings {
			env := EnvName(s.name)
			v, ok := lookup(env)
			if !ok {
				continue
			}
			if err := s.set(v); err != nil {
				errs = append(errs, &FlagError{Flag: s.name, Env: env, Value: v, Err: err})
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	var flagErr *FlagError
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, s := range settings {
		fs.Var(&recordingValue{name: s.name, get: s.get, set: s.set, bool: s.isBool, err: &flagErr}, s.name, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		switch {
		case flagErr != nil:
			return nil, flagErr
		case errors.Is(err, flag.ErrHelp):
			return nil, err
		}
		if flagName, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
			return nil, &UsageError{Err: fmt.Errorf("unknown flag --%s (see %s --help)", flagName, name)}
		}
		return nil, &UsageError{Err: fmt.Errorf("%v (see %s --help)", err, name)}
	}
	return fs.Args(), nil
}

// setting is one flag of the capture command: a CaptureConfig flag or a
// command flag.
type setting struct {
	name, usage string
	isBool      bool
	get         func() string
	set         func(string) error
}

func commandSettings(c *CaptureCommand) []setting {
	out := configSettings(&c.Config)
	boolSetting := func(name, usage string, p *bool) setting {
		return setting{
			name: name, usage: usage, isBool: true,
			get: func() string { return strconv.FormatBool(*p) },
			set: func(s string) error {
				b, err := strconv.ParseBool(strings.TrimSpace(s))
				if err != nil {
					return fmt.Errorf("%q is not a boolean (true or false)", s)
				}
				*p = b
				return nil
			},
		}
	}
	out = append(out,
		boolSetting(FlagDryRun, "print the iptables-restore and ip6tables-restore input and change nothing", &c.DryRun),
		boolSetting(FlagCleanup, "remove mesh-init's chains and jumps (and nothing else) instead of writing them", &c.Cleanup),
		setting{
			name: FlagCopySelfTo, usage: "copy this binary to the given path (atomically, mode 0755, parent created) before writing rules",
			get: func() string { return c.CopySelfTo },
			set: func(s string) error {
				s = strings.TrimSpace(s)
				if s != "" && !filepath.IsAbs(s) {
					return fmt.Errorf("%q is not an absolute path", s)
				}
				c.CopySelfTo = s
				return nil
			},
		},
		setting{
			name: FlagEnvoyBootstrapTo, usage: "write the proxy's bootstrap (--envoy-bootstrap) to this file (atomically, mode 0644, parent created) before writing rules",
			get: func() string { return c.EnvoyBootstrapTo },
			set: func(s string) error {
				s = strings.TrimSpace(s)
				if s != "" && !filepath.IsAbs(s) {
					return fmt.Errorf("%q is not an absolute path", s)
				}
				c.EnvoyBootstrapTo = s
				return nil
			},
		},
		setting{
			name: FlagEnvoyBootstrap, usage: "the proxy's bootstrap, compressed and base64-encoded as the injector renders it (encoding.go)",
			get: func() string { return c.EnvoyBootstrap },
			set: func(s string) error {
				data, err := DecodeFile(s)
				if err != nil {
					return err
				}
				// The injector sends Envoy's bootstrap as compact JSON.
				if !json.Valid(data) {
					return errors.New("decodes to something that is not JSON")
				}
				c.EnvoyBootstrap = s
				return nil
			},
		},
	)
	return out
}

// ParseCaptureCommand parses the arguments of `mesh-init capture`: every
// CaptureConfig flag (see CaptureConfig.Args) plus --dry-run, --cleanup,
// --copy-self-to and the bootstrap flags. It starts from
// DefaultCaptureConfig, applies the environment variables MESH_INIT_<FLAG>
// found through lookup (nil for none), then the arguments, which win. It is
// the parser mesh-init itself uses, so the injector's tests read back the
// init container's rendered arguments exactly as mesh-init will. Errors are
// *FlagError or *UsageError naming the flag or variable and the value; -h
// or --help returns flag.ErrHelp.
func ParseCaptureCommand(args []string, lookup func(string) (string, bool)) (CaptureCommand, error) {
	cmd := CaptureCommand{Config: DefaultCaptureConfig()}
	rest, err := parseSettings("mesh-init capture", commandSettings(&cmd), args, lookup)
	if err != nil {
		return CaptureCommand{}, err
	}
	if len(rest) > 0 {
		return CaptureCommand{}, &UsageError{Err: fmt.Errorf("unexpected argument %q: mesh-init capture takes only --flags (see mesh-init capture --help)", rest[0])}
	}
	if (cmd.EnvoyBootstrap == "") != (cmd.EnvoyBootstrapTo == "") {
		return CaptureCommand{}, &UsageError{Err: fmt.Errorf("--%s and --%s go together", FlagEnvoyBootstrap, FlagEnvoyBootstrapTo)}
	}
	if err := cmd.Config.Validate(); err != nil {
		return CaptureCommand{}, &UsageError{Err: err}
	}
	return cmd, nil
}

// FlagUsage describes one flag of `mesh-init capture` for its help text.
type FlagUsage struct {
	Name  string
	Usage string
	// Default is the flag's value in DefaultCaptureConfig, as text.
	Default string
	// Env is the environment variable that can set it.
	Env  string
	Bool bool
}

// CaptureFlags lists every flag ParseCaptureCommand accepts, in the order
// Args writes them.
func CaptureFlags() []FlagUsage {
	cmd := CaptureCommand{Config: DefaultCaptureConfig()}
	settings := commandSettings(&cmd)
	out := make([]FlagUsage, len(settings))
	for i, s := range settings {
		out[i] = FlagUsage{Name: s.name, Usage: s.usage, Default: s.get(), Env: EnvName(s.name), Bool: s.isBool}
	}
	return out
}
