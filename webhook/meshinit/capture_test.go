package meshinit

import (
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseCommandDefaults(t *testing.T) {
	cmd, err := ParseCaptureCommand(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cmd, CaptureCommand{Config: DefaultCaptureConfig()}) {
		t.Errorf("got %+v", cmd)
	}
}

func TestParseCommandFlagsAndEnv(t *testing.T) {
	cmd, err := ParseCaptureCommand(
		[]string{"--exclude-inbound-ports=22", "--dry-run", "--copy-self-to=/mesh/bin/mesh-init", "-iptables-mode", "legacy"},
		env("MESH_INIT_EXCLUDE_INBOUND_PORTS", "9999", // the flag wins
			"MESH_INIT_EXCLUDE_OUTBOUND_CIDRS", "10.0.0.0/8, fd00::/8",
			"MESH_INIT_CLEANUP", "true",
			"MESH_INIT_IPV6", "off"))
	if err != nil {
		t.Fatal(err)
	}
	c := cmd.Config
	if c.ExcludeInboundPorts.String() != "22" || c.ExcludeOutboundCIDRs.String() != "10.0.0.0/8,fd00::/8" ||
		c.Mode != ModeLegacy || c.IPv6 != IPv6Off || !cmd.DryRun || !cmd.Cleanup || cmd.CopySelfTo != "/mesh/bin/mesh-init" {
		t.Errorf("got %+v", cmd)
	}
}

// The injector renders the init container's args with Args; mesh-init
// must read back exactly the same command.
func TestCommandArgsRoundTrip(t *testing.T) {
	cmd, err := ParseCaptureCommand([]string{
		"--include-inbound-ports=80,8000-8100", "--exclude-inbound-ports=8761",
		"--include-outbound-ports=443", "--exclude-outbound-ports=8761",
		"--include-outbound-cidrs=10.0.0.0/8,fd00::/8", "--exclude-outbound-cidrs=10.1.0.0/16",
		"--proxy-uid=2000", "--proxy-gid=2001", "--iptables-mode=nft", "--ipv6=required",
		"--copy-self-to=/mesh/mesh-init", "--cleanup",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseCaptureCommand(cmd.Args(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, cmd) {
		t.Errorf("round trip:\n%+v\n%+v", cmd, back)
	}
	// Empty sets survive the round trip as empty, not as the "*" default.
	none := CaptureCommand{Config: DefaultCaptureConfig()}
	none.Config.IncludeInboundPorts = PortSet{}
	none.Config.IncludeOutboundCIDRs = CIDRSet{}
	back, err = ParseCaptureCommand(none.Args(), nil)
	if err != nil || !reflect.DeepEqual(back, none) {
		t.Errorf("round trip of empty sets: %+v %v", back, err)
	}
}

func TestParseCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--exclude-outbound-cidrs=10.0.0.0/8,10.0.0.300/32"}, nil,
			`invalid value "10.0.0.0/8,10.0.0.300/32" for --exclude-outbound-cidrs: "10.0.0.300/32" is not an IPv4 or IPv6 CIDR`},
		{[]string{"--include-outbound-cidrs=fd00::/129"}, nil,
			`invalid value "fd00::/129" for --include-outbound-cidrs: "fd00::/129" is not an IPv4 or IPv6 CIDR`},
		{[]string{"--exclude-inbound-ports=0"}, nil,
			`invalid value "0" for --exclude-inbound-ports: "0" is not a port (1-65535) or a range`},
		{[]string{"--include-inbound-ports=9000-8000"}, nil,
			`invalid value "9000-8000" for --include-inbound-ports: "9000-8000" is not a port`},
		{[]string{"--include-outbound-ports=http"}, nil,
			`invalid value "http" for --include-outbound-ports: "http" is not a port`},
		{[]string{"--outbound-port=70000"}, nil,
			`invalid value "70000" for --outbound-port: "70000" is not a port (1-65535)`},
		{[]string{"--proxy-uid=-1"}, nil,
			`invalid value "-1" for --proxy-uid: "-1" is not a user or group id (0-4294967294)`},
		{[]string{"--proxy-uid=4294967295"}, nil, // (uid_t)-1: the owner match refuses it
			`invalid value "4294967295" for --proxy-uid: "4294967295" is not a user or group id (0-4294967294)`},
		{[]string{"--proxy-gid=4294967296"}, nil,
			`invalid value "4294967296" for --proxy-gid: "4294967296" is not a user or group id (0-4294967294)`},
		{[]string{"--iptables-mode=iptables"}, nil,
			`invalid value "iptables" for --iptables-mode: "iptables" is not an iptables mode (auto, nft or legacy)`},
		{[]string{"--ipv6=yes"}, nil,
			`invalid value "yes" for --ipv6: "yes" is not an IPv6 mode (auto, required or off)`},
		{[]string{"--dry-run=maybe"}, nil,
			`invalid value "maybe" for --dry-run: "maybe" is not a boolean`},
		{[]string{"--copy-self-to=bin/mesh-init"}, nil,
			`invalid value "bin/mesh-init" for --copy-self-to: "bin/mesh-init" is not an absolute path`},
		{[]string{"--inbound-port=15001"}, nil,
			`--inbound-port and --outbound-port must differ (both 15001)`},
		{[]string{"--no-such-flag"}, nil, `unknown flag --no-such-flag`},
		{[]string{"apply"}, nil, `unexpected argument "apply"`},
		{nil, []string{"MESH_INIT_EXCLUDE_OUTBOUND_PORTS", "80,x"},
			`invalid value "80,x" for MESH_INIT_EXCLUDE_OUTBOUND_PORTS (--exclude-outbound-ports): "x" is not a port`},
		{nil, []string{"MESH_INIT_CLEANUP", "sometimes"},
			`invalid value "sometimes" for MESH_INIT_CLEANUP (--cleanup): "sometimes" is not a boolean`},
	} {
		_, err := ParseCaptureCommand(tc.args, env(tc.env...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCaptureCommand(%q, %q) = %v, want an error containing %q", tc.args, tc.env, err, tc.want)
			continue
		}
		// mesh-init exits with its usage code for exactly these two.
		var fe *FlagError
		var ue *UsageError
		if !errors.As(err, &fe) && !errors.As(err, &ue) {
			t.Errorf("%v is neither a *FlagError nor a *UsageError", err)
		}
	}
}

func TestParseCommandHelp(t *testing.T) {
	if _, err := ParseCaptureCommand([]string{"--help"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("got %v", err)
	}
	flags := map[string]FlagUsage{}
	for _, f := range CaptureFlags() {
		flags[f.Name] = f
	}
	for name, env := range map[string]string{"exclude-outbound-cidrs": "MESH_INIT_EXCLUDE_OUTBOUND_CIDRS", "copy-self-to": "MESH_INIT_COPY_SELF_TO", "dry-run": "MESH_INIT_DRY_RUN"} {
		if f, ok := flags[name]; !ok || f.Env != env || f.Usage == "" {
			t.Errorf("CaptureFlags: %s is %+v, want its usage and %s", name, f, env)
		}
	}
	if !flags["dry-run"].Bool || flags["include-inbound-ports"].Default != "*" {
		t.Errorf("CaptureFlags: kinds or defaults wrong: %+v", flags)
	}
}

// Errors name the flag (or variable) and the value, so mesh-init's message
// says what to fix.
func TestFlagErrorNamesFlagAndEnv(t *testing.T) {
	_, err := ParseCaptureCommand([]string{"--exclude-inbound-ports=x"}, nil)
	var fe *FlagError
	if !errors.As(err, &fe) || fe.Flag != "exclude-inbound-ports" || fe.Value != "x" || fe.Env != "" {
		t.Errorf("got %v", err)
	}
	_, err = ParseCaptureCommand(nil, env("MESH_INIT_IPV6", "maybe"))
	if !errors.As(err, &fe) || fe.Env != "MESH_INIT_IPV6" || fe.Flag != "ipv6" {
		t.Errorf("got %v", err)
	}
}

func TestValidate(t *testing.T) {
	var c CaptureConfig
	err := c.Validate()
	for _, want := range []string{"--inbound-port must be set", "--outbound-port must be set", "--iptables-mode", "--ipv6"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of a zero Config: %v, want %q", err, want)
		}
	}
	if err := DefaultCaptureConfig().Validate(); err != nil {
		t.Error(err)
	}
}
