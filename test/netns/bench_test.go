package netns

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

var doneIn = regexp.MustCompile(`mesh-init: done in (\S+)`)

// BenchmarkApply measures `mesh-init capture` writing both families' rules
// inside a pod namespace (it has an IPv6 address, so both are written), run
// the way the tests run it, through `ip netns exec`:
//
//	sudo go test ./test/netns -run '^$' -bench Apply -benchtime 100x -count 5
//
// ns/op is the wall time of the whole command, `ip netns exec` included
// (its own cost is the ip-netns-exec baseline); internal-ms/op is the time
// mesh-init itself reports (from parsed flags to the last restore). "fresh"
// applies to a namespace without our rules (an untimed cleanup precedes
// each run); "rerun" repeats the same settings, as after a container
// restart (the rules are found up to date and nothing is written);
// "changed" alternates two settings, so every run rewrites the chains over
// existing ones. Auto mode, timed fresh, reads both backends first.
func BenchmarkApply(b *testing.B) {
	requirePrerequisites(b)
	tp := newTopo(b, true)
	b.Run("ip-netns-exec", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("ip", "netns", "exec", tp.pod, "true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	apply := func(b *testing.B, internal *time.Duration, args ...string) {
		out := mustMeshInit(b, tp.pod, args...)
		m := doneIn.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no timing in %q", out)
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			b.Fatal(err)
		}
		*internal += d
	}
	// Auto mode in a brand-new namespace, as in a new pod: no legacy table
	// exists, so only the nft backend is read. Creating and deleting the
	// namespace is not timed.
	b.Run("auto/new-namespace", func(b *testing.B) {
		var internal time.Duration
		n := 0
		for b.Loop() {
			b.StopTimer()
			n++
			ns := fmt.Sprintf("%s-bench%d", tp.pod, n)
			run(b, "ip", "netns", "add", ns)
			b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
			cmd := exec.Command("ip", "-n", ns, "-batch", "-")
			cmd.Stdin = strings.NewReader("link set lo up\nlink add eth0 type veth peer name eth1\n" +
				"addr add fd00::1/64 dev eth0 nodad\nlink set eth0 up\nlink set eth1 up\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v %s", err, out)
			}
			b.StartTimer()
			out := mustMeshInit(b, ns)
			b.StopTimer()
			_ = exec.Command("ip", "netns", "del", ns).Run()
			if !strings.Contains(out, "IPv6: detected") {
				b.Fatalf("IPv6 not detected:\n%s", out)
			}
			m := doneIn.FindStringSubmatch(out)
			d, _ := time.ParseDuration(m[1])
			internal += d
			b.StartTimer()
		}
		b.ReportMetric(float64(internal.Milliseconds())/float64(b.N), "internal-ms/op")
	})
	for _, mode := range []string{"nft", "legacy", "auto"} {
		args := []string{"--iptables-mode=" + mode}
		b.Run(mode+"/fresh", func(b *testing.B) {
			var internal time.Duration
			for b.Loop() {
				b.StopTimer()
				mustMeshInit(b, tp.pod, "--cleanup")
				b.StartTimer()
				apply(b, &internal, args...)
			}
			b.ReportMetric(float64(internal.Milliseconds())/float64(b.N), "internal-ms/op")
		})
		if mode == "auto" {
			continue
		}
		b.Run(mode+"/rerun", func(b *testing.B) {
			mustMeshInit(b, tp.pod, args...)
			var internal time.Duration
			for b.Loop() {
				apply(b, &internal, args...)
			}
			b.ReportMetric(float64(internal.Milliseconds())/float64(b.N), "internal-ms/op")
		})
		b.Run(mode+"/changed", func(b *testing.B) {
			other := append([]string{"--exclude-outbound-ports=8761"}, args...)
			var internal time.Duration
			i := 0
			for b.Loop() {
				if i++; i%2 == 0 {
					apply(b, &internal, args...)
				} else {
					apply(b, &internal, other...)
				}
			}
			b.ReportMetric(float64(internal.Milliseconds())/float64(b.N), "internal-ms/op")
		})
		mustMeshInit(b, tp.pod, "--cleanup")
	}
}
