package meshinit

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of TCP ports; a single port has From == To.
type PortRange struct {
	From uint16
	To   uint16
}

// String renders the range as "8080" or "8000-8100".
func (r PortRange) String() string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return strconv.Itoa(int(r.From)) + "-" + strconv.Itoa(int(r.To))
}

// Contains reports whether p lies inside the range.
func (r PortRange) Contains(p uint16) bool { return p >= r.From && p <= r.To }

// ParsePortRange parses "8080" or "8000-8100". The error says what is accepted.
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	from, to, isRange := strings.Cut(s, "-")
	a, err := parsePort(from)
	if err != nil {
		return PortRange{}, fmt.Errorf("%q is not a port (%s) or a range (such as 8000-8100)", s, PortRangeText)
	}
	if !isRange {
		return PortRange{From: a, To: a}, nil
	}
	b, err := parsePort(to)
	if err != nil || b < a {
		return PortRange{}, fmt.Errorf("%q is not a port (%s) or a range (such as 8000-8100)", s, PortRangeText)
	}
	return PortRange{From: a, To: b}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("not a port")
	}
	return uint16(n), nil
}

// PortList is an ordered, duplicate-free list of port ranges. Its text form
// is a comma-separated list ("80,443,8000-8100"); in YAML and JSON it may also
// be written as a list of numbers and strings.
type PortList []PortRange

// ParsePortList parses a comma-separated list. Blank items are ignored, so
// "" is the empty list.
func ParsePortList(s string) (PortList, error) {
	var out PortList
	for _, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		r, err := ParsePortRange(item)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out.Normalize(), nil
}

// Normalize sorts the list and drops repeated ranges, in place; the list
// parsers return lists in this form.
func (l PortList) Normalize() PortList {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].From != l[j].From {
			return l[i].From < l[j].From
		}
		return l[i].To < l[j].To
	})
	out := l[:1]
	for _, r := range l[1:] {
		if r != out[len(out)-1] {
			out = append(out, r)
		}
	}
	return out
}

// String renders the list in its comma-separated text form.
func (l PortList) String() string {
	parts := make([]string, len(l))
	for i, r := range l {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Contains reports whether any range in the list holds p.
func (l PortList) Contains(p uint16) bool {
	for _, r := range l {
		if r.Contains(p) {
			return true
		}
	}
	return false
}

// MarshalJSON writes the comma-separated text form.
func (l PortList) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// UnmarshalJSON accepts "80,443", [80, "8000-8100"] or null.
func (l *PortList) UnmarshalJSON(b []byte) error {
	items, err := textOrList(b)
	if err != nil {
		return fmt.Errorf("a port list is a string such as \"80,8000-8100\" or a list of ports: %w", err)
	}
	parsed, err := ParsePortList(strings.Join(items, ","))
	if err != nil {
		return err
	}
	*l = parsed
	return nil
}

// PortSet is either every port ("*") or an explicit list. The zero value is
// the empty set: nothing is selected.
type PortSet struct {
	All   bool
	Ports PortList
}

// ParsePortSet parses "*" or a comma-separated port list.
func ParsePortSet(s string) (PortSet, error) {
	if strings.TrimSpace(s) == "*" {
		return PortSet{All: true}, nil
	}
	l, err := ParsePortList(s)
	if err != nil {
		return PortSet{}, err
	}
	return PortSet{Ports: l}, nil
}

// String renders "*" or the port list.
func (s PortSet) String() string {
	if s.All {
		return "*"
	}
	return s.Ports.String()
}

// MarshalJSON writes "*" or the comma-separated list.
func (s PortSet) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON accepts "*", "80,443" or a list.
func (s *PortSet) UnmarshalJSON(b []byte) error {
	items, err := textOrList(b)
	if err != nil {
		return fmt.Errorf("a port set is \"*\", a string such as \"80,8000-8100\" or a list of ports: %w", err)
	}
	parsed, err := ParsePortSet(strings.Join(items, ","))
	if err != nil {
		return err
	}
	*s = parsed
	return nil
}

// CIDRList is an ordered, duplicate-free list of IPv4 and IPv6 prefixes.
// Host bits are cleared on parse ("10.1.2.3/8" becomes "10.0.0.0/8"); a bare
// address is a /32 or /128.
type CIDRList []netip.Prefix

// ParseCIDR parses one prefix or address, naming what is accepted on error.
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 or IPv6 CIDR (such as 10.0.0.0/8 or fd00::/8)", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 or IPv6 CIDR (such as 10.0.0.0/8 or fd00::/8)", s)
	}
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix shorter than /96; write it as an IPv4 CIDR", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p.Masked(), nil
}

// ParseCIDRList parses a comma-separated list of prefixes.
func ParseCIDRList(s string) (CIDRList, error) {
	var out CIDRList
	for _, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		p, err := ParseCIDR(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out.normalize(), nil
}

func (l CIDRList) normalize() CIDRList {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool {
		if c := l[i].Addr().Compare(l[j].Addr()); c != 0 {
			return c < 0
		}
		return l[i].Bits() < l[j].Bits()
	})
	out := l[:1]
	for _, p := range l[1:] {
		if p != out[len(out)-1] {
			out = append(out, p)
		}
	}
	return out
}

// Family returns the prefixes of one address family: IPv4 when v6 is false.
func (l CIDRList) Family(v6 bool) CIDRList {
	var out CIDRList
	for _, p := range l {
		if p.Addr().Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}

// String renders the comma-separated text form.
func (l CIDRList) String() string {
	parts := make([]string, len(l))
	for i, p := range l {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// MarshalJSON writes the comma-separated text form.
func (l CIDRList) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// UnmarshalJSON accepts "10.0.0.0/8,fd00::/8" or a list of strings.
func (l *CIDRList) UnmarshalJSON(b []byte) error {
	items, err := textOrList(b)
	if err != nil {
		return fmt.Errorf("a CIDR list is a string such as \"10.0.0.0/8,fd00::/8\" or a list of CIDRs: %w", err)
	}
	parsed, err := ParseCIDRList(strings.Join(items, ","))
	if err != nil {
		return err
	}
	*l = parsed
	return nil
}

// CIDRSet is either every destination ("*") or an explicit list.
type CIDRSet struct {
	All   bool
	CIDRs CIDRList
}

// ParseCIDRSet parses "*" or a comma-separated CIDR list.
func ParseCIDRSet(s string) (CIDRSet, error) {
	if strings.TrimSpace(s) == "*" {
		return CIDRSet{All: true}, nil
	}
	l, err := ParseCIDRList(s)
	if err != nil {
		return CIDRSet{}, err
	}
	return CIDRSet{CIDRs: l}, nil
}

// String renders "*" or the CIDR list.
func (s CIDRSet) String() string {
	if s.All {
		return "*"
	}
	return s.CIDRs.String()
}

// MarshalJSON writes "*" or the list.
func (s CIDRSet) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON accepts "*", a comma-separated string or a list.
func (s *CIDRSet) UnmarshalJSON(b []byte) error {
	items, err := textOrList(b)
	if err != nil {
		return fmt.Errorf("a CIDR set is \"*\", a string such as \"10.0.0.0/8,fd00::/8\" or a list of CIDRs: %w", err)
	}
	parsed, err := ParseCIDRSet(strings.Join(items, ","))
	if err != nil {
		return err
	}
	*s = parsed
	return nil
}

// textOrList decodes a JSON string, number, list of strings/numbers or null
// into text items.
func textOrList(b []byte) ([]string, error) {
	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	switch v := raw.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case float64:
		return []string{strconv.FormatFloat(v, 'f', -1, 64)}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, item := range v {
			switch it := item.(type) {
			case string:
				out = append(out, it)
			case float64:
				out = append(out, strconv.FormatFloat(it, 'f', -1, 64))
			default:
				return nil, fmt.Errorf("unexpected list item %v", item)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unexpected value %s", string(b))
	}
}
