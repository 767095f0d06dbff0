package capture

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// This file is the pure half of mesh-init: it turns a Config and what
// iptables-save reported into iptables-restore input. Nothing here runs a
// program or reads a file, so every byte written to the kernel can be checked
// by golden tests.

// Family is an IP address family. Each family has its own nat table, its own
// tools (iptables or ip6tables) and its own copy of mesh-init's chains.
type Family int

// The two families mesh-init writes rules for.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "IPv4" or "IPv6".
func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

func (f Family) is6() bool { return f == IPv6 }

// tool returns the base name of the family's command ("iptables" or
// "ip6tables").
func (f Family) tool() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// The chains mesh-init owns in the nat table of each family. Nothing else in
// the nat table is ever changed except the two jumps that enter them.
const (
	// ChainInbound decides which connections arriving from the network
	// (PREROUTING) go to the proxy's inbound port.
	ChainInbound = "MESH_INBOUND"
	// ChainInRedirect redirects to the inbound port.
	ChainInRedirect = "MESH_IN_REDIRECT"
	// ChainOutput decides which locally originated connections (OUTPUT) go
	// to the proxy's outbound port.
	ChainOutput = "MESH_OUTPUT"
	// ChainRedirect redirects to the outbound port.
	ChainRedirect = "MESH_REDIRECT"
)

// OwnedChains returns mesh-init's chains in the order they are declared.
func OwnedChains() []string {
	return []string{ChainInbound, ChainInRedirect, ChainOutput, ChainRedirect}
}

func isOwnedChain(name string) bool {
	switch name {
	case ChainInbound, ChainInRedirect, ChainOutput, ChainRedirect:
		return true
	}
	return false
}

// The jumps from the built-in chains into ours, written exactly as
// iptables-save prints them so an existing jump is recognised byte for byte.
// Both are always installed (an empty chain is a no-op), which keeps the
// structure identical whatever the settings, so a re-run with different
// settings converges instead of leaving a stale jump behind.
var wantJumps = []string{
	"-A PREROUTING -p tcp -j " + ChainInbound,
	"-A OUTPUT -p tcp -j " + ChainOutput,
}

// ChainRules returns the rules of mesh-init's chains for one family, in the
// form iptables-save prints them. Only family's CIDRs are used: an IPv6 CIDR
// never reaches iptables and an IPv4 one never reaches ip6tables.
func ChainRules(c meshinit.CaptureConfig, f Family) []string {
	var out []string
	out = append(out, inboundRules(c)...)
	out = append(out,
		"-A "+ChainInRedirect+" -p tcp -j REDIRECT --to-ports "+strconv.Itoa(int(c.InboundPort)))
	out = append(out, outboundRules(c, f)...)
	out = append(out,
		"-A "+ChainRedirect+" -p tcp -j REDIRECT --to-ports "+strconv.Itoa(int(c.OutboundPort)))
	return out
}

// inboundExclusions are the ports never redirected inbound: the proxy's own
// ports (admin, readiness, stats, and its two capture ports) and the
// user's exclusions.
func inboundExclusions(c meshinit.CaptureConfig) meshinit.PortList {
	l := make(meshinit.PortList, 0, len(c.ProxyPorts)+len(c.ExcludeInboundPorts)+2)
	l = append(l, c.ProxyPorts...)
	l = append(l, meshinit.PortRange{From: c.InboundPort, To: c.InboundPort}, meshinit.PortRange{From: c.OutboundPort, To: c.OutboundPort})
	l = append(l, c.ExcludeInboundPorts...)
	return l.Normalize()
}

func inboundRules(c meshinit.CaptureConfig) []string {
	inc := c.IncludeInboundPorts
	if !inc.All && len(inc.Ports) == 0 {
		// Istio's semantics: an empty include list captures nothing inbound.
		return nil
	}
	var out []string
	for _, r := range inboundExclusions(c) {
		// With an explicit include list only an exclusion that overlaps it
		// changes anything; the rest would be dead rules.
		if inc.All || overlapsAny(inc.Ports, r) {
			out = append(out, "-A "+ChainInbound+" -p tcp -m tcp --dport "+iptPorts(r)+" -j RETURN")
		}
	}
	if inc.All {
		return append(out, "-A "+ChainInbound+" -p tcp -j "+ChainInRedirect)
	}
	for _, r := range inc.Ports {
		out = append(out, "-A "+ChainInbound+" -p tcp -m tcp --dport "+iptPorts(r)+" -j "+ChainInRedirect)
	}
	return out
}

func outboundRules(c meshinit.CaptureConfig, f Family) []string {
	incAll := c.IncludeOutboundCIDRs.All
	var incCIDRs meshinit.CIDRList
	for _, p := range c.IncludeOutboundCIDRs.CIDRs.Family(f.is6()) {
		if p.Bits() == 0 {
			incAll = true // 0.0.0.0/0 or ::/0 is "everything" for this family
		}
		incCIDRs = append(incCIDRs, p)
	}
	if !incAll && len(incCIDRs) == 0 && len(c.IncludeOutboundPorts) == 0 {
		// Nothing is redirected outbound for this family; the chain stays
		// empty rather than holding exclusions that guard nothing.
		return nil
	}
	o := "-A " + ChainOutput + " "
	out := []string{
		// The proxy's own connections (by UID, and by GID for proxies that
		// run with a different UID) are never redirected: this is what
		// stops both the outbound loop and the proxy's forwarding of
		// inbound connections to the app from being captured again.
		o + "-m owner --uid-owner " + strconv.FormatUint(uint64(c.ProxyUID), 10) + " -j RETURN",
		o + "-m owner --gid-owner " + strconv.FormatUint(uint64(c.ProxyGID), 10) + " -j RETURN",
		// Anything routed over loopback (127.0.0.0/8, ::1 and the pod's own
		// addresses) stays inside the pod and is never redirected.
		o + "-o lo -j RETURN",
	}
	for _, r := range c.ExcludeOutboundPorts {
		out = append(out, o+"-p tcp -m tcp --dport "+iptPorts(r)+" -j RETURN")
	}
	for _, p := range c.ExcludeOutboundCIDRs.Family(f.is6()) {
		out = append(out, o+iptDest(p)+"-j RETURN")
	}
	// Istio's order: exclusions first, so an excluded CIDR or port wins even
	// over includeOutboundPorts; then ports captured whatever the address.
	for _, r := range c.IncludeOutboundPorts {
		out = append(out, o+"-p tcp -m tcp --dport "+iptPorts(r)+" -j "+ChainRedirect)
	}
	if incAll {
		return append(out, o+"-j "+ChainRedirect)
	}
	for _, p := range incCIDRs {
		out = append(out, o+iptDest(p)+"-j "+ChainRedirect)
	}
	return out
}

// iptPorts renders a range as iptables writes it ("8080" or "8000:8100").
func iptPorts(r meshinit.PortRange) string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return strconv.Itoa(int(r.From)) + ":" + strconv.Itoa(int(r.To))
}

// iptDest renders "-d prefix " as iptables-save prints it; a /0 matches
// everything and is printed without -d.
func iptDest(p netip.Prefix) string {
	if p.Bits() == 0 {
		return ""
	}
	return "-d " + p.String() + " "
}

func overlapsAny(l meshinit.PortList, r meshinit.PortRange) bool {
	for _, x := range l {
		if x.From <= r.To && r.From <= x.To {
			return true
		}
	}
	return false
}

// NATState is what one iptables-save output says about mesh-init's objects,
// plus the rule counts the backend detection needs.
type NATState struct {
	// Chains are the owned chains present in the nat table.
	Chains []string
	// Jumps are rules in chains mesh-init does not own whose target is one
	// of its chains, exactly as saved ("-A PREROUTING -p tcp -j MESH_INBOUND").
	Jumps []string
	// Owned holds the rules of each owned chain as saved, in order.
	Owned map[string][]string
	// Rules is the number of rules in all tables of the output, ours
	// included.
	Rules int
	// Hint is true when the output holds a chain Kubernetes components
	// create to mark the backend they use (KUBE-IPTABLES-HINT,
	// KUBE-KUBELET-CANARY).
	Hint bool
}

// Empty reports whether none of mesh-init's chains or jumps exist.
func (s NATState) Empty() bool { return len(s.Chains) == 0 && len(s.Jumps) == 0 }

// ParseSave reads iptables-save or ip6tables-save output (all tables or just
// nat).
func ParseSave(out string) NATState {
	var s NATState
	table := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '*':
			table = line[1:]
		case line[0] == ':':
			name, _, _ := strings.Cut(line[1:], " ")
			if name == "KUBE-IPTABLES-HINT" || name == "KUBE-KUBELET-CANARY" {
				s.Hint = true
			}
			if table == "nat" && isOwnedChain(name) {
				s.Chains = append(s.Chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			s.Rules++
			if table != "nat" {
				continue
			}
			fields := saveFields(line)
			if len(fields) < 2 {
				continue
			}
			if isOwnedChain(fields[1]) {
				if s.Owned == nil {
					s.Owned = map[string][]string{}
				}
				s.Owned[fields[1]] = append(s.Owned[fields[1]], canonicalAddrs(line, fields))
				continue
			}
			if isOwnedChain(ruleTarget(fields)) {
				s.Jumps = append(s.Jumps, line)
			}
		}
	}
	return s
}

// saveFields splits a saved rule into its arguments the way the shell-like
// quoting of iptables-save means them: a quoted string (a comment, say) is
// one argument, backslash escapes included, so text inside it can never be
// read as an option ("-m comment --comment \"do not -j MESH_OUTPUT\"").
func saveFields(line string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inField := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			inQuote, inField = !inQuote, true
		case (c == ' ' || c == '\t') && !inQuote:
			if inField {
				out = append(out, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			cur.WriteByte(c)
			inField = true
		}
	}
	if inField {
		out = append(out, cur.String())
	}
	return out
}

// canonicalAddrs rewrites the addresses of a saved rule's -d and -s options
// in the form the rules are generated in (Go's netip): iptables-save prints
// some IPv6 prefixes differently (glibc writes ::102:304 as ::1.2.3.4), and
// an unchanged rule must compare equal or every re-run would rewrite it.
func canonicalAddrs(line string, fields []string) string {
	for i := 0; i+1 < len(fields); i++ {
		switch fields[i] {
		case "-d", "-s", "--destination", "--source":
		default:
			continue
		}
		p, err := netip.ParsePrefix(fields[i+1])
		if err != nil || p.String() == fields[i+1] {
			continue
		}
		line = strings.Replace(line, " "+fields[i]+" "+fields[i+1]+" ", " "+fields[i]+" "+p.String()+" ", 1)
	}
	return line
}

// ruleTarget returns the chain a saved rule jumps or goes to.
func ruleTarget(fields []string) string {
	for i := 0; i+1 < len(fields); i++ {
		switch fields[i] {
		case "-j", "--jump", "-g", "--goto":
			return fields[i+1]
		}
	}
	return ""
}

// ApplyInput returns the iptables-restore --noflush input that makes the nat
// table of one family hold exactly mesh-init's rules for c, given the
// current state. Declaring a chain in --noflush mode creates it or empties
// it, so the chains are rewritten whole; the jumps are added only when
// missing, and any other jump into our chains (a duplicate, or one an older
// version wrote) is deleted. Running it twice therefore changes nothing the
// second time. All of it is one transaction: it applies whole or not at all.
func ApplyInput(c meshinit.CaptureConfig, f Family, current NATState) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, ch := range OwnedChains() {
		b.WriteString(":" + ch + " - [0:0]\n")
	}
	present := map[string]int{}
	for _, j := range current.Jumps {
		present[j]++
	}
	want := map[string]bool{}
	for _, j := range wantJumps {
		want[j] = true
	}
	seen := map[string]bool{}
	for _, j := range current.Jumps {
		if want[j] && !seen[j] {
			seen[j] = true // keep the first copy of a wanted jump
			continue
		}
		b.WriteString("-D" + strings.TrimPrefix(j, "-A") + "\n")
	}
	for _, r := range ChainRules(c, f) {
		b.WriteString(r + "\n")
	}
	for _, j := range wantJumps {
		if present[j] == 0 {
			b.WriteString(j + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// UpToDate reports whether current already holds exactly what ApplyInput
// would leave: all four chains with exactly ChainRules(c, f) in order, and
// exactly the two jumps, once each. Because the rules are generated in the
// form iptables-save prints, a re-run with unchanged settings (a container
// restart) can skip the restore altogether.
func UpToDate(c meshinit.CaptureConfig, f Family, current NATState) bool {
	if len(current.Chains) != len(OwnedChains()) || len(current.Jumps) != len(wantJumps) {
		return false
	}
	jumps := map[string]bool{}
	for _, j := range current.Jumps {
		jumps[j] = true
	}
	for _, j := range wantJumps {
		if !jumps[j] {
			return false
		}
	}
	want := map[string][]string{}
	for _, r := range ChainRules(c, f) {
		ch := strings.Fields(r)[1]
		want[ch] = append(want[ch], r)
	}
	for _, ch := range OwnedChains() {
		if !slices.Equal(want[ch], current.Owned[ch]) {
			return false
		}
	}
	return true
}

// CleanupInput returns the iptables-restore --noflush input that removes
// exactly mesh-init's jumps and chains, or "" when there is nothing to
// remove. Other rules and chains are left untouched.
func CleanupInput(current NATState) string {
	if current.Empty() {
		return ""
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, j := range current.Jumps {
		b.WriteString("-D" + strings.TrimPrefix(j, "-A") + "\n")
	}
	// Flush every chain before deleting any: MESH_INBOUND refers to
	// MESH_IN_REDIRECT, and a referenced chain cannot be deleted.
	for _, ch := range current.Chains {
		b.WriteString("-F " + ch + "\n")
	}
	for _, ch := range current.Chains {
		b.WriteString("-X " + ch + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// installedState is the state right after ApplyInput ran on a clean table;
// dry runs of --cleanup show the input for it.
func installedState() NATState {
	return NATState{Chains: OwnedChains(), Jumps: append([]string(nil), wantJumps...)}
}

// DryRun renders what `capture` (or `capture --cleanup`) would feed to
// iptables-restore and ip6tables-restore on a pod that holds none of
// mesh-init's rules (or, for cleanup, exactly mesh-init's rules). On a
// re-run the real input differs only in leaving out jumps that exist.
func DryRun(c meshinit.CaptureConfig, cleanup bool) string {
	var b strings.Builder
	fams := []Family{IPv4, IPv6}
	if c.IPv6 == meshinit.IPv6Off {
		fams = fams[:1]
	}
	for _, f := range fams {
		fmt.Fprintf(&b, "# %s: input for %s-restore --noflush\n", f, f.tool())
		if cleanup {
			b.WriteString(CleanupInput(installedState()))
		} else {
			b.WriteString(ApplyInput(c, f, NATState{}))
		}
	}
	return b.String()
}
