package meshinit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Mode selects the iptables backend.
type Mode string

// The iptables backends mesh-init can drive.
const (
	ModeAuto   Mode = "auto"
	ModeNFT    Mode = "nft"
	ModeLegacy Mode = "legacy"
)

// IPv6Mode says whether ip6tables rules are written.
type IPv6Mode string

// The IPv6 handling modes.
const (
	// IPv6Auto writes IPv6 rules when the pod has IPv6 and skips them, with a
	// log line, when it has none.
	IPv6Auto IPv6Mode = "auto"
	// IPv6Required always writes IPv6 rules and fails when the pod's kernel
	// has IPv6 disabled or the rules cannot be written.
	IPv6Required IPv6Mode = "required"
	// IPv6Off never touches ip6tables.
	IPv6Off IPv6Mode = "off"
)

// CaptureConfig is everything mesh-init needs to write the capture rules.
// The injector fills it from the effective settings and renders it with
// Args; mesh-init reads it back with ParseCaptureCommand.
type CaptureConfig struct {
	// ProxyUID and ProxyGID identify the proxy's own traffic, which is never
	// redirected (no loops).
	ProxyUID uint32
	ProxyGID uint32
	// OutboundPort is where redirected outbound connections land (15001).
	OutboundPort uint16
	// InboundPort is where redirected inbound connections land (15006).
	InboundPort uint16
	// ProxyPorts are the proxy's own listening ports (admin 15000, readiness
	// 15021, stats 15090); inbound traffic to them is never redirected.
	ProxyPorts PortList

	IncludeInboundPorts  PortSet
	ExcludeInboundPorts  PortList
	IncludeOutboundPorts PortList
	ExcludeOutboundPorts PortList
	IncludeOutboundCIDRs CIDRSet
	ExcludeOutboundCIDRs CIDRList

	Mode Mode
	IPv6 IPv6Mode
}

// DefaultCaptureConfig returns the settings of a fully captured pod with
// the standard proxy ports.
func DefaultCaptureConfig() CaptureConfig {
	return CaptureConfig{
		ProxyUID:             ProxyUID,
		ProxyGID:             ProxyGID,
		OutboundPort:         ProxyOutboundPort,
		InboundPort:          ProxyInboundPort,
		ProxyPorts:           PortList{{From: ProxyAdminPort, To: ProxyAdminPort}, {From: ProxyReadinessPort, To: ProxyReadinessPort}, {From: ProxyStatsPort, To: ProxyStatsPort}},
		IncludeInboundPorts:  PortSet{All: true},
		IncludeOutboundCIDRs: CIDRSet{All: true},
		Mode:                 ModeAuto,
		IPv6:                 IPv6Auto,
	}
}

// EnvPrefix is prepended to a flag's upper-case name to form the environment
// variable that can set it (--exclude-inbound-ports -> MESH_INIT_EXCLUDE_INBOUND_PORTS).
const EnvPrefix = "MESH_INIT_"

// flagSpec binds one flag name to its text form in both directions.
type flagSpec struct {
	name  string
	usage string
	get   func(*CaptureConfig) string
	set   func(*CaptureConfig, string) error
}

// idFlag is a UID or GID: 0 to 4294967294, since (uid_t)-1 means "no
// change" to the kernel and the owner match refuses it.
func idFlag(name, usage string, get func(*CaptureConfig) uint32, set func(*CaptureConfig, uint32)) flagSpec {
	return flagSpec{
		name: name, usage: usage,
		get: func(c *CaptureConfig) string { return strconv.FormatUint(uint64(get(c)), 10) },
		set: func(c *CaptureConfig, s string) error {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
			if err != nil || n == math.MaxUint32 {
				return fmt.Errorf("%q is not a user or group id (0-%d)", s, uint32(math.MaxUint32-1))
			}
			set(c, uint32(n))
			return nil
		},
	}
}

func portFlag(name, usage string, field func(*CaptureConfig) *uint16) flagSpec {
	return flagSpec{
		name: name, usage: usage,
		get: func(c *CaptureConfig) string { return strconv.Itoa(int(*field(c))) },
		set: func(c *CaptureConfig, s string) error {
			p, err := parsePort(s)
			if err != nil {
				return fmt.Errorf("%q is not a port (%s)", s, PortRangeText)
			}
			*field(c) = p
			return nil
		},
	}
}

func portListFlag(name, usage string, field func(*CaptureConfig) *PortList) flagSpec {
	return flagSpec{
		name: name, usage: usage,
		get: func(c *CaptureConfig) string { return field(c).String() },
		set: func(c *CaptureConfig, s string) error {
			l, err := ParsePortList(s)
			if err != nil {
				return err
			}
			*field(c) = l
			return nil
		},
	}
}

var flagSpecs = []flagSpec{
	idFlag("proxy-uid", "UID the proxy runs as; its traffic is never redirected",
		func(c *CaptureConfig) uint32 { return c.ProxyUID }, func(c *CaptureConfig, n uint32) { c.ProxyUID = n }),
	idFlag("proxy-gid", "GID the proxy runs as; its traffic is never redirected",
		func(c *CaptureConfig) uint32 { return c.ProxyGID }, func(c *CaptureConfig, n uint32) { c.ProxyGID = n }),
	portFlag("outbound-port", "proxy port that receives redirected outbound connections",
		func(c *CaptureConfig) *uint16 { return &c.OutboundPort }),
	portFlag("inbound-port", "proxy port that receives redirected inbound connections",
		func(c *CaptureConfig) *uint16 { return &c.InboundPort }),
	portListFlag("proxy-ports", "the proxy's own ports, never redirected inbound",
		func(c *CaptureConfig) *PortList { return &c.ProxyPorts }),
	{
		name: "include-inbound-ports", usage: `inbound ports to redirect: "*" for all, or a list such as "80,8000-8100"; empty for none`,
		get: func(c *CaptureConfig) string { return c.IncludeInboundPorts.String() },
		set: func(c *CaptureConfig, s string) error {
			v, err := ParsePortSet(s)
			c.IncludeInboundPorts = v
			return err
		},
	},
	portListFlag("exclude-inbound-ports", "inbound ports never redirected",
		func(c *CaptureConfig) *PortList { return &c.ExcludeInboundPorts }),
	portListFlag("include-outbound-ports", "outbound ports redirected whatever the destination address",
		func(c *CaptureConfig) *PortList { return &c.IncludeOutboundPorts }),
	portListFlag("exclude-outbound-ports", "outbound ports never redirected",
		func(c *CaptureConfig) *PortList { return &c.ExcludeOutboundPorts }),
	{
		name: "include-outbound-cidrs", usage: `outbound destinations to redirect: "*" for all, or IPv4 and IPv6 CIDRs; empty for none`,
		get: func(c *CaptureConfig) string { return c.IncludeOutboundCIDRs.String() },
		set: func(c *CaptureConfig, s string) error {
			v, err := ParseCIDRSet(s)
			c.IncludeOutboundCIDRs = v
			return err
		},
	},
	{
		name: "exclude-outbound-cidrs", usage: "outbound destinations (IPv4 and IPv6 CIDRs) never redirected",
		get: func(c *CaptureConfig) string { return c.ExcludeOutboundCIDRs.String() },
		set: func(c *CaptureConfig, s string) error {
			v, err := ParseCIDRList(s)
			c.ExcludeOutboundCIDRs = v
			return err
		},
	},
	{
		name: "iptables-mode", usage: "iptables backend: auto, nft or legacy",
		get: func(c *CaptureConfig) string { return string(c.Mode) },
		set: func(c *CaptureConfig, s string) error {
			switch m := Mode(strings.TrimSpace(s)); m {
			case ModeAuto, ModeNFT, ModeLegacy:
				c.Mode = m
				return nil
			}
			return fmt.Errorf("%q is not an iptables mode (auto, nft or legacy)", s)
		},
	},
	{
		name: "ipv6", usage: "IPv6 rules: auto (when the pod has IPv6), required, or off",
		get: func(c *CaptureConfig) string { return string(c.IPv6) },
		set: func(c *CaptureConfig, s string) error {
			switch m := IPv6Mode(strings.TrimSpace(s)); m {
			case IPv6Auto, IPv6Required, IPv6Off:
				c.IPv6 = m
				return nil
			}
			return fmt.Errorf("%q is not an IPv6 mode (auto, required or off)", s)
		},
	},
}

// Args renders every setting as a "--name=value" argument, in a fixed order.
// Every flag is written, defaults included, so the init container's spec
// says exactly what it will do whatever mesh-init's own defaults are.
func (c CaptureConfig) Args() []string {
	out := make([]string, 0, len(flagSpecs))
	for _, f := range flagSpecs {
		out = append(out, "--"+f.name+"="+f.get(&c))
	}
	return out
}

// Validate checks relations between settings that no single flag can, and
// the settings a CaptureConfig built in code (rather than parsed) may have
// left unset.
func (c CaptureConfig) Validate() error {
	var errs []error
	if c.InboundPort == 0 {
		errs = append(errs, fmt.Errorf("--inbound-port must be set (%s)", PortRangeText))
	}
	if c.OutboundPort == 0 {
		errs = append(errs, fmt.Errorf("--outbound-port must be set (%s)", PortRangeText))
	}
	switch c.Mode {
	case ModeAuto, ModeNFT, ModeLegacy:
	default:
		errs = append(errs, fmt.Errorf("--iptables-mode %q is not auto, nft or legacy", c.Mode))
	}
	switch c.IPv6 {
	case IPv6Auto, IPv6Required, IPv6Off:
	default:
		errs = append(errs, fmt.Errorf("--ipv6 %q is not auto, required or off", c.IPv6))
	}
	if c.InboundPort != 0 && c.InboundPort == c.OutboundPort {
		errs = append(errs, fmt.Errorf("--inbound-port and --outbound-port must differ (both %d)", c.InboundPort))
	}
	return errors.Join(errs...)
}

// EnvName returns the environment variable for a flag name.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// configSettings exposes the CaptureConfig flags to the shared parser.
func configSettings(c *CaptureConfig) []setting {
	out := make([]setting, 0, len(flagSpecs)+3)
	for i := range flagSpecs {
		spec := &flagSpecs[i]
		out = append(out, setting{
			name: spec.name, usage: spec.usage,
			get: func() string { return spec.get(c) },
			set: func(s string) error { return spec.set(c, s) },
		})
	}
	return out
}
