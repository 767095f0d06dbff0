package capture

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// saveOf renders what iptables-save would print after ApplyInput ran on an
// empty table.
func saveOf(c meshinit.CaptureConfig, f Family) string {
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, ch := range OwnedChains() {
		b.WriteString(":" + ch + " - [0:0]\n")
	}
	for _, j := range wantJumps {
		b.WriteString(j + "\n")
	}
	for _, r := range ChainRules(c, f) {
		b.WriteString(r + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Verify (the CNI plugin's CHECK) passes exactly when the tables hold what
// Execute writes, and says what differs otherwise; it never writes.
func TestVerify(t *testing.T) {
	c := meshinit.DefaultCaptureConfig()
	f := newFake()
	f.saves["iptables-nft-save"] = saveOf(c, IPv4)
	f.saves["ip6tables-nft-save"] = saveOf(c, IPv6)
	if err := Verify(context.Background(), c, f.host()); err != nil {
		t.Fatalf("rules in place: %v", err)
	}
	for _, call := range f.calls {
		if strings.Contains(call, "restore") {
			t.Errorf("Verify wrote: %s", call)
		}
	}

	f = newFake() // no rules at all
	err := Verify(context.Background(), c, f.host())
	var me *MismatchError
	if !errors.As(err, &me) || me.Family != IPv4 || !strings.Contains(err.Error(), "chain MESH_OUTPUT is missing") {
		t.Errorf("empty tables: %v", err)
	}

	f = newFake() // IPv4 fine, IPv6 written with other settings
	other := c
	other.ExcludeOutboundPorts = meshinit.PortList{{From: 8761, To: 8761}}
	f.saves["iptables-nft-save"] = saveOf(c, IPv4)
	f.saves["ip6tables-nft-save"] = saveOf(other, IPv6)
	err = Verify(context.Background(), c, f.host())
	if !errors.As(err, &me) || me.Family != IPv6 || !strings.Contains(err.Error(), "chain MESH_OUTPUT holds 5 rules that differ from the 4") {
		t.Errorf("IPv6 differs: %v", err)
	}

	f = newFake() // IPv4-only pod: only IPv4 is checked
	f.files["/proc/net/if_inet6"] = linkLocalV6
	f.saves["iptables-nft-save"] = saveOf(c, IPv4)
	if err := Verify(context.Background(), c, f.host()); err != nil {
		t.Errorf("IPv4-only pod: %v", err)
	}
}
