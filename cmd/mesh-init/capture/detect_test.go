package capture

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := m[name]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
}

func TestChooseBackend(t *testing.T) {
	avail := func(rules int, hint bool) Observation { return Observation{Available: true, Rules: rules, Hint: hint} }
	for _, tc := range []struct {
		name        string
		nft, legacy Observation
		want        meshinit.Mode
		why         string
	}{
		{"fresh pod", avail(0, false), avail(0, false), meshinit.ModeNFT, "both backends hold 0 rules; nft is the default"},
		{"legacy has rules", avail(0, false), avail(3, false), meshinit.ModeLegacy, "the legacy backend holds more rules (3 legacy, 0 nft)"},
		{"nft has more", avail(5, false), avail(3, false), meshinit.ModeNFT, "the nft backend holds more rules (5 nft, 3 legacy)"},
		{"tie with rules", avail(4, false), avail(4, false), meshinit.ModeNFT, "both backends hold 4 rules; nft is the default"},
		{"nft hint beats legacy rules", avail(0, true), avail(40, false), meshinit.ModeNFT, "the nft backend holds a Kubernetes marker chain"},
		{"legacy hint", avail(40, false), avail(1, true), meshinit.ModeLegacy, "the legacy backend holds a Kubernetes marker chain"},
		{"only legacy binaries", Observation{}, avail(0, false), meshinit.ModeLegacy, "only the legacy backend is available"},
		{"only nft binaries", avail(0, false), Observation{}, meshinit.ModeNFT, "only the nft backend is available"},
		// A re-run stays where our chains are, even when the other backend
		// has since gained more rules or a marker chain.
		{"ours in nft, legacy grew", Observation{Available: true, Rules: 28, Ours: true}, avail(40, false), meshinit.ModeNFT, "mesh-init's chains are in the nft backend already"},
		{"ours in legacy, nft hint", avail(0, true), Observation{Available: true, Rules: 18, Ours: true}, meshinit.ModeLegacy, "mesh-init's chains are in the legacy backend already"},
		{"ours in both: the usual rules", Observation{Available: true, Rules: 18, Ours: true}, Observation{Available: true, Rules: 58, Ours: true}, meshinit.ModeLegacy, "the legacy backend holds more rules (58 legacy, 18 nft)"},
	} {
		got, why, err := ChooseBackend(tc.nft, tc.legacy)
		if err != nil || got != tc.want || why != tc.why {
			t.Errorf("%s: got %s %q %v, want %s %q", tc.name, got, why, err, tc.want, tc.why)
		}
	}
	if _, _, err := ChooseBackend(Observation{}, Observation{}); err == nil {
		t.Error("no backend at all: no error")
	}
}

func TestDetectIPv6(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    map[string]string
		kernel   bool
		routable bool
		reason   string
	}{
		{"no if_inet6", map[string]string{}, false, false, "/proc/net/if_inet6 is absent"},
		{"disabled", map[string]string{"/proc/net/if_inet6": "", "/proc/sys/net/ipv6/conf/all/disable_ipv6": "1\n"}, false, false, "disable_ipv6 is 1"},
		{"loopback only", map[string]string{"/proc/net/if_inet6": "00000000000000000000000000000001 01 80 10 80       lo\n"}, true, false, "only loopback or link-local"},
		{"link-local", map[string]string{"/proc/net/if_inet6": linkLocalV6}, true, false, "only loopback or link-local"},
		{"ula", map[string]string{"/proc/net/if_inet6": dualStack, "/proc/sys/net/ipv6/conf/all/disable_ipv6": "0\n"}, true, true, "eth0 has the global IPv6 address fd00::1"},
		{"global", map[string]string{"/proc/net/if_inet6": "20010db8000000000000000000000005 03 40 00 00     net1\n"}, true, true, "net1 has the global IPv6 address 2001:db8::5"},
	} {
		st := DetectIPv6(files(tc.files))
		if st.Kernel != tc.kernel || st.Routable != tc.routable || !strings.Contains(st.Reason, tc.reason) {
			t.Errorf("%s: got %+v", tc.name, st)
		}
	}
}

func TestCheckCapabilities(t *testing.T) {
	for _, tc := range []struct {
		capEff string
		mode   meshinit.Mode
		want   string // "" = ok
	}{
		{"000001ffffffffff", meshinit.ModeLegacy, ""},
		{"0000000000003000", meshinit.ModeLegacy, ""},
		{"0000000000001000", meshinit.ModeNFT, ""},
		{"0000000000001000", meshinit.ModeLegacy, "lacks the NET_RAW capability"},
		{"0000000000000000", meshinit.ModeLegacy, "lacks the NET_ADMIN and NET_RAW capabilities (effective capabilities 0x0)"},
		{"0000000000000000", meshinit.ModeAuto, "lacks the NET_ADMIN capability"},
	} {
		err := checkCapabilities(files(map[string]string{"/proc/self/status": "Name:\tmesh-init\nCapEff:\t" + tc.capEff + "\n"}), tc.mode)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %s: %v", tc.capEff, tc.mode, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != ExitPrerequisite):
			t.Errorf("%s %s: %v, want %q", tc.capEff, tc.mode, err, tc.want)
		}
	}
	// Unreadable status: let the tools decide.
	if err := checkCapabilities(files(nil), meshinit.ModeLegacy); err != nil {
		t.Error(err)
	}
}

func TestDescribeCaps(t *testing.T) {
	for caps, want := range map[uint64]string{
		0x3000:        "NET_ADMIN,NET_RAW (0x3000)",
		0:             "none (0x0)",
		1<<12 | 1<<63: "NET_ADMIN,CAP_63 (0x8000000000001000)",
	} {
		if got := DescribeCaps(caps); got != want {
			t.Errorf("DescribeCaps(%#x) = %q, want %q", caps, got, want)
		}
	}
}

func TestLegacyTablesEmpty(t *testing.T) {
	if !legacyTablesEmpty(files(nil)) {
		t.Error("absent files: not empty")
	}
	if !legacyTablesEmpty(files(map[string]string{"/proc/net/ip_tables_names": "", "/proc/net/ip6_tables_names": "\n"})) {
		t.Error("empty files: not empty")
	}
	if legacyTablesEmpty(files(map[string]string{"/proc/net/ip6_tables_names": "nat\n"})) {
		t.Error("ip6 nat table: empty")
	}
}
