package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/test/node/nodeharness"
)

// This file takes one pod's start apart, from the kubelet's log (its
// klog lines carry microseconds) and the containers' own log lines (the
// CRI log's nanosecond timestamps), so docs/lossless.md can say where the
// time injection adds goes. Container statuses in the API carry seconds
// only, too coarse for this.

// startParts is one pod's start, each field the time since the pod's
// create call was sent (zero when not seen).
type startParts struct {
	// kubeletAdd: the kubelet got the pod (SyncLoop ADD): admission
	// (the webhook), storage, scheduling and the kubelet's watch.
	kubeletAdd time.Duration
	// sandbox: the kubelet's PLEG saw the pod sandbox: the network is
	// set up and the first container (mesh-init, or the app) started, in
	// the same sync.
	sandbox time.Duration
	// initStart, initEnd: mesh-init's (or istio-init's) own run, from its
	// "done in" line (the copy, the bootstrap and the rules).
	initStart, initEnd time.Duration
	// initSeen: the PLEG reported the init container's exit.
	initSeen time.Duration
	// proxyStart, proxyReady: the Envoy stand-in's first log line and its
	// "ready" line; proxySeen: the PLEG reported it running (a periodic
	// relist may do so while its postStart hook still runs; the pod
	// worker, busy in the sync that runs the hook, acts on it after).
	proxyStart, proxyReady, proxySeen time.Duration
	// started: the kubelet's startup probe reported the proxy started
	// (startup-probe shapes only).
	started time.Duration
	// appStart: the app's "start" line (it is listening); appSeen: the
	// PLEG reported it running.
	appStart, appSeen time.Duration
	// ready: the pod's Ready condition, from the watch.
	ready time.Duration
}

// shape names a pod shape's containers.
type shape struct{ init, proxy, app string }

var (
	ourShape   = shape{"mesh-init", "mesh-proxy", "app"}
	istioNames = shape{"istio-init", "istio-proxy", "app"}
)

// collectStart reads what the kubelet and the containers logged about one
// pod, from the kubelet log's offset taken before the pod was created.
func collectStart(n *nodeharness.Node, pod *corev1.Pod, sh shape, created, ready time.Time, kubeletFrom int64) startParts {
	p := startParts{ready: ready.Sub(created)}
	since := func(t time.Time) time.Duration {
		if t.IsZero() {
			return 0
		}
		return t.Sub(created)
	}
	ids := map[string]string{} // container ID -> name
	for _, group := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range group {
			ids[strings.TrimPrefix(cs.ContainerID, "containerd://")] = cs.Name
		}
	}
	ref := pod.Namespace + "/" + pod.Name
	for _, l := range kubeletLines(n, kubeletFrom, ref) {
		switch {
		case strings.Contains(l.text, `"SyncLoop ADD"`) && p.kubeletAdd == 0:
			p.kubeletAdd = since(l.at)
		case strings.Contains(l.text, `"SyncLoop (PLEG): event for pod"`):
			m := plegEventRE.FindStringSubmatch(l.text)
			if m == nil {
				continue
			}
			name, known := ids[m[2]]
			switch {
			case !known && m[1] == "ContainerStarted" && p.sandbox == 0:
				p.sandbox = since(l.at)
			case name == sh.init && m[1] == "ContainerDied" && p.initSeen == 0:
				p.initSeen = since(l.at)
			case name == sh.proxy && m[1] == "ContainerStarted" && p.proxySeen == 0:
				p.proxySeen = since(l.at)
			case name == sh.app && m[1] == "ContainerStarted" && p.appSeen == 0:
				p.appSeen = since(l.at)
			}
		case strings.Contains(l.text, `"SyncLoop (probe)" probe="startup" status="started"`) && p.started == 0:
			p.started = since(l.at)
		}
	}
	if lines := criLines(n, pod, sh.init); len(lines) > 0 {
		last := lines[len(lines)-1]
		if m := doneInRE.FindStringSubmatch(last.text); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				p.initStart, p.initEnd = since(last.at.Add(-d)), since(last.at)
			}
		}
	}
	if lines := criLines(n, pod, sh.proxy); len(lines) > 0 {
		p.proxyStart = since(lines[0].at)
		for _, l := range lines {
			var j struct{ Msg string }
			if json.Unmarshal([]byte(l.text), &j) == nil && j.Msg == "ready" {
				p.proxyReady = since(l.at)
				break
			}
		}
	}
	for _, l := range criLines(n, pod, sh.app) {
		if strings.Contains(l.text, `"start"`) {
			p.appStart = since(l.at)
			break
		}
	}
	return p
}

var (
	plegEventRE = regexp.MustCompile(`"Type":"(\w+)","Data":"([0-9a-f]+)"`)
	doneInRE    = regexp.MustCompile(`mesh-init: done in (\S+)$`)
	klogTimeRE  = regexp.MustCompile(`^[IWEF](\d{4} \d{2}:\d{2}:\d{2}\.\d{6})`)
)

type stamped struct {
	at   time.Time
	text string
}

// kubeletLogSize is where the kubelet's log ends now: collectStart reads
// from there, so each pod costs only its own lines.
func kubeletLogSize(n *nodeharness.Node) int64 {
	fi, err := os.Stat(filepath.Join(n.Dir, "kubelet.log"))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// kubeletLines are the kubelet's log lines that name the pod ref, with
// their klog times (local time, no year: this year is assumed).
func kubeletLines(n *nodeharness.Node, from int64, ref string) []stamped {
	f, err := os.Open(filepath.Join(n.Dir, "kubelet.log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return nil
	}
	var out []stamped
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	quoted := `"` + ref + `"`
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, quoted) {
			continue
		}
		m := klogTimeRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		t, err := time.ParseInLocation("0102 15:04:05.000000", m[1], time.Local)
		if err != nil {
			continue
		}
		out = append(out, stamped{t.AddDate(time.Now().Year(), 0, 0), line})
	}
	return out
}

// criLines are a container's log lines with their times: the time the
// process wrote into a JSON line ("time", as the stand-in's and testapp's
// lines carry), else the runtime's timestamp ("2026-12-08T00:42:04.519528123Z
// stdout F text"). The runtime stamps a line when containerd reads it from
// the container's pipe, which lags the write on a busy machine: the
// stand-in's first line stamped late made its 2s initialization look
// shorter in CI.
func criLines(n *nodeharness.Node, pod *corev1.Pod, container string) []stamped {
	raw, err := n.LogFiles(pod.Namespace, pod.Name, container)
	if err != nil {
		return nil
	}
	var out []stamped
	for _, l := range strings.Split(raw, "\n") {
		f := strings.SplitN(l, " ", 4)
		if len(f) < 4 {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f[0])
		if err != nil {
			continue
		}
		var own struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(f[3]), &own) == nil && !own.Time.IsZero() {
			t = own.Time
		}
		out = append(out, stamped{t, f[3]})
	}
	return out
}

// phases are the steps docs/lossless.md reports, in order, each the
// difference of two of the times above (zero when either is missing).
type phase struct {
	name string
	of   func(startParts) time.Duration
}

func between(a, b func(startParts) time.Duration) func(startParts) time.Duration {
	return func(p startParts) time.Duration {
		if a(p) == 0 || b(p) == 0 {
			return 0
		}
		return b(p) - a(p)
	}
}

func at0(startParts) time.Duration { return time.Nanosecond } // the create call (a non-zero zero)

var injectedPhases = []phase{
	{"create → kubelet has it", between(at0, func(p startParts) time.Duration { return p.kubeletAdd })},
	{"→ PLEG sees the sandbox (its first container started)", between(func(p startParts) time.Duration { return p.kubeletAdd }, func(p startParts) time.Duration { return p.sandbox })},
	{"→ init starts", between(func(p startParts) time.Duration { return p.sandbox }, func(p startParts) time.Duration { return p.initStart })},
	{"init runs", between(func(p startParts) time.Duration { return p.initStart }, func(p startParts) time.Duration { return p.initEnd })},
	{"init exit → PLEG sees it", between(func(p startParts) time.Duration { return p.initEnd }, func(p startParts) time.Duration { return p.initSeen })},
	{"→ proxy starts", between(func(p startParts) time.Duration { return p.initSeen }, func(p startParts) time.Duration { return p.proxyStart })},
	{"proxy's own start (stand-in start → ready)", between(func(p startParts) time.Duration { return p.proxyStart }, func(p startParts) time.Duration { return p.proxyReady })},
	{"proxy ready → startup probe says started", between(func(p startParts) time.Duration { return p.proxyReady }, func(p startParts) time.Duration { return p.started })},
	{"proxy ready → PLEG reports it running", between(func(p startParts) time.Duration { return p.proxyReady }, func(p startParts) time.Duration { return p.proxySeen })},
	{"proxy ready → app starts (the gate)", between(func(p startParts) time.Duration { return p.proxyReady }, func(p startParts) time.Duration { return p.appStart })},
	{"app starts → PLEG sees it", between(func(p startParts) time.Duration { return p.appStart }, func(p startParts) time.Duration { return p.appSeen })},
	{"app starts → pod Ready", between(func(p startParts) time.Duration { return p.appStart }, func(p startParts) time.Duration { return p.ready })},
}

var plainPhases = []phase{
	{"create → kubelet has it", injectedPhases[0].of},
	{"→ PLEG sees the sandbox (its first container started)", injectedPhases[1].of},
	{"→ app starts", between(func(p startParts) time.Duration { return p.sandbox }, func(p startParts) time.Duration { return p.appStart })},
	{"app starts → PLEG sees it", injectedPhases[10].of},
	{"app starts → pod Ready", injectedPhases[11].of},
}

// phaseTable is the median of each phase over a series' pods.
func phaseTable(b *bytes.Buffer, phases []phase, parts []startParts) {
	for _, ph := range phases {
		var ds []time.Duration
		for _, p := range parts {
			if d := ph.of(p); d != 0 {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			continue
		}
		fmt.Fprintf(b, "|   %s | %s | %s | %d |\n", ph.name, median(ds), spread(ds), len(ds))
	}
}

// dryRunInjected is the pod as the injector would have it in ns: created
// with dryRun=All, so the API server runs the webhook and stores nothing.
func dryRunInjected(ctx context.Context, n *nodeharness.Node, pod *corev1.Pod) (*corev1.Pod, error) {
	got, err := n.Clientset.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return nil, fmt.Errorf("dry-run create of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if _, ok := got.Annotations["sidecar-injector.io/status"]; !ok {
		return nil, fmt.Errorf("the dry run of %s/%s was not injected", pod.Namespace, pod.Name)
	}
	return got, nil
}

// handMade turns an injected pod into one to create by hand in another
// namespace (one the injector does not serve): what the API server added
// (the service account token volume, metadata) and the injector's status
// go, so the API server and the kubelet see only the shape.
func handMade(injected *corev1.Pod, ns, name string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: *injected.Spec.DeepCopy()}
	keep := p.Spec.Volumes[:0]
	for _, v := range p.Spec.Volumes {
		if !strings.HasPrefix(v.Name, "kube-api-access-") {
			keep = append(keep, v)
		}
	}
	p.Spec.Volumes = keep
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			mounts := cs[i].VolumeMounts[:0]
			for _, m := range cs[i].VolumeMounts {
				if !strings.HasPrefix(m.Name, "kube-api-access-") {
					mounts = append(mounts, m)
				}
			}
			cs[i].VolumeMounts = mounts
		}
	}
	p.Spec.NodeName = ""
	return p
}

func initContainer(p *corev1.Pod, name string) *corev1.Container {
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == name {
			return &p.Spec.InitContainers[i]
		}
	}
	return nil
}

// beforeShape is the injected pod as this injector made it before the
// start-time work of issue 18: the native proxy held by a startup probe
// (every 1s, timeout 1s) instead of its postStart hook, and mesh-init
// limited to 100m of CPU. (mesh-init's fsync of its copies, the third
// change, is in the binary and is not reproduced.)
func beforeShape(injected *corev1.Pod, ns, name string) *corev1.Pod {
	p := handMade(injected, ns, name)
	proxy := initContainer(p, ourShape.proxy)
	proxy.Lifecycle = nil
	proxy.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/healthz/ready", Port: intstr.FromInt32(15021)}}, PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: 60}
	initContainer(p, ourShape.init).Resources.Limits[corev1.ResourceCPU] = resource.MustParse("100m")
	return p
}

// istioShape is Istio's native shape (testdata/istio-native-shape.yaml,
// generated from Istio's injector by test/istio-anchor) run with our
// images: istio-init is our mesh-init with Istio's resources and security
// context, istio-proxy the Envoy STAND-IN with Istio's probes, resources
// and security context (hooks: below); the app gets nothing (Istio adds
// no hook to it; its probe rewrite through pilot-agent has no stand-in).
func istioShape(injected *corev1.Pod, ns, name string) (*corev1.Pod, error) {
	raw, err := os.ReadFile("testdata/istio-native-shape.yaml")
	if err != nil {
		return nil, err
	}
	var fixture []corev1.Container
	if err := yaml.Unmarshal(raw, &fixture); err != nil {
		return nil, fmt.Errorf("testdata/istio-native-shape.yaml: %w", err)
	}
	p := handMade(injected, ns, name)
	for _, f := range fixture {
		ours := map[string]string{istioNames.init: ourShape.init, istioNames.proxy: ourShape.proxy}[f.Name]
		c := initContainer(p, ours)
		if c == nil {
			return nil, fmt.Errorf("no %s in the injected pod to stand in for %s", ours, f.Name)
		}
		wait := c.Lifecycle
		c.Name = f.Name
		c.RestartPolicy, c.StartupProbe, c.ReadinessProbe, c.LivenessProbe = f.RestartPolicy, f.StartupProbe, f.ReadinessProbe, f.LivenessProbe
		c.Resources, c.SecurityContext = f.Resources, f.SecurityContext
		// Istio's hooks run pilot-agent, which the stand-in's image does
		// not have: its postStart (`pilot-agent wait`, only with
		// holdApplicationUntilProxyStarts) becomes our wait-ready, its
		// native preStop (`pilot-agent request POST drain`) goes: it acts
		// on the stop, which is not compared here.
		c.Lifecycle = nil
		if f.Lifecycle != nil && f.Lifecycle.PostStart != nil {
			if wait == nil || wait.PostStart == nil {
				return nil, fmt.Errorf("Istio's %s has a postStart hook and ours has none to stand in for it", f.Name)
			}
			c.Lifecycle = &corev1.Lifecycle{PostStart: wait.PostStart}
		}
	}
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		c.Lifecycle = nil
		mounts := c.VolumeMounts[:0]
		for _, m := range c.VolumeMounts {
			if m.Name != "mesh-tools" {
				mounts = append(mounts, m)
			}
		}
		c.VolumeMounts = mounts
	}
	p.Spec.TerminationGracePeriodSeconds = nil
	return p, nil
}

func fmtParts(p startParts) string {
	f := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64)
	}
	return fmt.Sprintf("kubelet %s sandbox %s init %s–%s seen %s proxy %s ready %s seen %s started %s app %s seen %s Ready %s",
		f(p.kubeletAdd), f(p.sandbox), f(p.initStart), f(p.initEnd), f(p.initSeen), f(p.proxyStart), f(p.proxyReady), f(p.proxySeen),
		f(p.started), f(p.appStart), f(p.appSeen), f(p.ready))
}
