package node

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/test/node/nodeharness"
	"github.com/sidecar-injector/injector/test/node/rollout"
)

// fullMeasure is set to run the node tier's heavy measurements in full
// (docs/lossless.md): every rollout scenario with 3 replicas, and 20 pods
// per start and stop median. Without it `make test` runs a short version.
const fullMeasureEnv = "SIDECAR_INJECTOR_NODE_MEASURE"

func fullMeasure() bool { return os.Getenv(fullMeasureEnv) == "full" }

// The rollout measurements' parameters (docs/lossless.md explains each).
const (
	// The client: one request every 20ms (50 a second), each on a new
	// connection, a request slower than 5s failed.
	clientInterval = 20 * time.Millisecond
	clientTimeout  = 5 * time.Second
	// kube-proxy's propagation delay, emulated.
	endpointsDelay = time.Second
	// A registry consumer's fetch interval: the Eureka client's 30s
	// fetch, the server's 30s response cache and the load balancer's
	// list, scaled down together.
	registryPoll = 2 * time.Second
	// The drain that covers both (injector default: 5s).
	drainSeconds = 5
	// The client runs this long before and after each rollout.
	settle = 2 * time.Second
	// The short version (make test) runs this many rollouts at once, each
	// client sending every shortClientInterval: ten cases of 50 requests a
	// second at once, through their pods' stand-ins, held 2 cores at a
	// load average of 44, and requests timed out by the hundred in every
	// case, the right settings included (a busy machine, not lost
	// instances).
	shortRolloutsAtOnce = 5
	shortClientInterval = 50 * time.Millisecond
)

type rolloutCase struct {
	name     string
	injected bool
	// ann are the pod template's annotations (drain, registry preset).
	ann map[string]string
	// registry is "" for the Service path, else a key of appRegistries:
	// the registry the app registers in and the consumers read, and how
	// the hook reaches it.
	registry string
	// lossless says this is the right setting: zero failures expected.
	lossless bool
	// fullOnly cases run only with SIDECAR_INJECTOR_NODE_MEASURE=full.
	fullOnly bool
}

// appRegistry is a registry as a rollout case uses it: the consumers'
// side and the environment (the Registry), and how testapp registers.
type appRegistry struct {
	rollout.Registry
	// register is testapp's --register; args are more of its arguments.
	register string
	args     []string
	// contextPath puts every path of the app behind it
	// (SERVER_SERVLET_CONTEXT_PATH): the probe's and the client's too.
	contextPath string
}

// appRegistries are the registries of the rollouts, over the stand-ins
// in pods (registryPods): each preset of the hook tool once, with the
// registry the app registers in behind it.
func appRegistries(pods map[string]rollout.Registry) map[string]appRegistry {
	nacos := pods["nacos"].(rollout.Nacos)
	expose := corev1.EnvVar{Name: "MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE", Value: "health,serviceregistry"}
	return map[string]appRegistry{
		"eureka": {Registry: pods["eureka"], register: "eureka"},
		"nacos":  {Registry: nacos, register: "nacos"},
		"consul": {Registry: pods["consul"], register: "consul"},
		// Spring Cloud Netflix with actuator on a management port.
		"spring-netflix": {Registry: rollout.Via{Registry: pods["eureka"], Hook: "spring-cloud",
			What:  "Spring Cloud Netflix's service-registry endpoint on the management port 8081",
			Extra: []corev1.EnvVar{expose, {Name: "MANAGEMENT_SERVER_PORT", Value: "8081"}}}, register: "eureka"},
		// Spring Cloud Alibaba with the app (actuator included) behind a
		// servlet context path.
		"spring-alibaba": {Registry: rollout.Via{Registry: nacos, Hook: "spring-cloud",
			What:  "Spring Cloud Alibaba's service-registry endpoint behind the context path /shop",
			Extra: []corev1.EnvVar{expose, {Name: "SERVER_SERVLET_CONTEXT_PATH", Value: "/shop"}}}, register: "nacos", contextPath: "/shop"},
		"dubbo": {Registry: rollout.Dubbo{Nacos: nacos}, register: "dubbo"},
		// The EDAS agent in the app's process, registered in Nacos.
		"edas": {Registry: rollout.Via{Registry: nacos, Hook: "edas", What: "the EDAS agent's GET 127.0.0.1:54199/offline in the app"},
			register: "nacos", args: []string{"--edas-agent"}},
		// The app's own offline endpoint, with a check URL.
		"http": {Registry: rollout.Via{Registry: nacos, Hook: "http", What: "the app's own POST /offline, checked on its /registration"},
			register: "nacos"},
	}
}

func rolloutCases() []rolloutCase {
	drain := func(s int) map[string]string {
		return map[string]string{"sidecar-injector.io/drain-seconds": fmt.Sprint(s), "sidecar-injector.io/registry": "none"}
	}
	preset := func(p string, s int) map[string]string {
		return map[string]string{"sidecar-injector.io/drain-seconds": fmt.Sprint(s), "sidecar-injector.io/registry": p}
	}
	cases := []rolloutCase{
		{name: "svc-no-injection"},
		{name: "svc-injected-drain-0s", injected: true, ann: drain(0), fullOnly: true},
		{name: fmt.Sprintf("svc-injected-drain-%ds", drainSeconds), injected: true, ann: drain(drainSeconds), lossless: true},
	}
	for _, reg := range []string{"eureka", "nacos"} {
		cases = append(cases,
			rolloutCase{name: reg + "-no-injection", registry: reg, fullOnly: true},
			rolloutCase{name: fmt.Sprintf("%s-injected-registry-none-drain-%ds", reg, drainSeconds), registry: reg, injected: true, ann: drain(drainSeconds), fullOnly: reg == "nacos"},
			rolloutCase{name: fmt.Sprintf("%s-injected-%s-preset-drain-1s", reg, reg), registry: reg, injected: true, ann: preset(reg, 1), fullOnly: true},
			rolloutCase{name: fmt.Sprintf("%s-injected-%s-preset-drain-%ds", reg, reg, drainSeconds), registry: reg, injected: true, ann: preset(reg, drainSeconds), lossless: true, fullOnly: reg == "nacos"},
		)
	}
	// Consul: a registry of its own, and its consumers' own query
	// (?passing): registry none loses there too (full measurement).
	cases = append(cases,
		rolloutCase{name: fmt.Sprintf("consul-injected-registry-none-drain-%ds", drainSeconds), registry: "consul", injected: true, ann: drain(drainSeconds), fullOnly: true},
		rolloutCase{name: fmt.Sprintf("consul-injected-consul-preset-drain-%ds", drainSeconds), registry: "consul", injected: true, ann: preset("consul", drainSeconds), lossless: true},
	)
	// The presets that reach Eureka or Nacos through the app itself: one
	// rollout each with the drain it needs. What registry none loses with
	// those registries is measured above.
	for _, reg := range []string{"spring-netflix", "spring-alibaba", "dubbo", "edas", "http"} {
		p := map[string]string{"spring-netflix": "spring-cloud", "spring-alibaba": "spring-cloud"}[reg]
		if p == "" {
			p = reg
		}
		ann := preset(p, drainSeconds)
		if reg == "http" {
			ann["sidecar-injector.io/offline-http-url"] = "http://127.0.0.1:8080/offline"
			ann["sidecar-injector.io/offline-http-check-url"] = "http://127.0.0.1:8080/registration"
			ann["sidecar-injector.io/offline-http-check-body"] = `"state":"deregistered"`
		}
		cases = append(cases, rolloutCase{name: fmt.Sprintf("%s-injected-%s-preset-drain-%ds", reg, p, drainSeconds), registry: reg,
			injected: true, ann: ann, lossless: true})
	}
	return cases
}

// TestLosslessRollouts measures what a client loses while a Deployment's
// pods are replaced one by one by kube-controller-manager (test/node/rollout;
// docs/lossless.md), through a Service's EndpointSlices (kube-proxy
// emulated) and through a registry the app registers in itself
// (test/registry's Eureka, Nacos 2.5.1 and Consul agent stand-ins, served
// from pods by test/node/cmd/registry), reached by every preset of the
// hook (spring-cloud, dubbo, edas and http through the app's own endpoint),
// without injection, with injection and the wrong setting, and with the
// right one: the right one must lose nothing, and no replaced pod's
// preStop hook may fail. `make test` runs a short version (2 replicas,
// five cases at a time: Service no injection vs the drain; Eureka registry
// none; the right setting of every preset but nacos);
// SIDECAR_INJECTOR_NODE_MEASURE=full runs every case with 3 replicas and
// also requires the wrong settings to lose requests.
func TestLosslessRollouts(t *testing.T) {
	n := nodeharness.Shared(t)
	if !n.Controllers {
		t.Skip("kube-controller-manager is not built (bash test/tools/install.sh --only node): no Deployment controller")
	}
	injector(t, n)
	regs := appRegistries(registryPods(t, n))
	replicas := int32(2)
	if fullMeasure() {
		replicas = 3
	}
	var mu sync.Mutex
	var reports []*rollout.Report
	load := loadavg()
	interval := clientInterval
	if !fullMeasure() {
		interval = shortClientInterval
	}
	slots := make(chan struct{}, shortRolloutsAtOnce)
	t.Cleanup(func() {
		if len(reports) == 0 {
			return
		}
		t.Logf("rollouts of %d replicas, one request every %s on a new connection; Service path: kube-proxy emulated %s after the API server; registry path: consumer fetch every %s (test/registry's stand-ins in pods); load average before %s, after %s\n%s",
			replicas, interval, endpointsDelay, registryPoll, load, loadavg(), rollout.Table(reports))
	})
	for _, tc := range rolloutCases() {
		if tc.fullOnly && !fullMeasure() {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			// The short version runs its cases at once (they mostly
			// wait); the full measurement one at a time, so that each
			// case's numbers are its own.
			if !fullMeasure() {
				t.Parallel()
				slots <- struct{}{}
				defer func() { <-slots }()
			}
			ctx := t.Context()
			ns := "ro-" + tc.name
			labels := map[string]string(nil)
			if tc.injected {
				labels = map[string]string{nodeharness.InjectionLabel: "enabled"}
			}
			if err := n.EnsureNamespace(ctx, ns, labels); err != nil {
				t.Fatal(err)
			}
			dep := rolloutDeployment(ns, replicas, tc.ann)
			sc := rollout.Scenario{Name: tc.name, Deployment: dep, Interval: interval, Timeout: clientTimeout,
				Path: "/whoami", Settle: settle, Logf: t.Logf}
			app := &dep.Spec.Template.Spec.Containers[0]
			switch tc.registry {
			case "":
				sc.Service = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
					Spec: corev1.ServiceSpec{Selector: dep.Spec.Selector.MatchLabels,
						Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
				sc.Discovery = &rollout.EndpointSlices{Client: n.Clientset, Namespace: ns, Service: "web", Port: 8080, Delay: endpointsDelay}
			default:
				r, ok := regs[tc.registry]
				if !ok {
					t.Fatalf("no registry %q", tc.registry)
				}
				// Each case its own application name: one registry serves all.
				appName := strings.ReplaceAll(tc.name, "-", "")
				app.Env = append(app.Env, r.Env(appName)...)
				app.Args = append(append(app.Args, "--register="+r.register), r.args...)
				if r.contextPath != "" {
					app.ReadinessProbe.HTTPGet.Path = r.contextPath + "/whoami"
					sc.Path = r.contextPath + "/whoami"
				}
				sc.Discovery = &rollout.RegistryPoll{Registry: r, App: appName, Interval: registryPoll}
			}
			rep, err := rollout.Run(ctx, n.Clientset, sc)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			reports = append(reports, rep)
			mu.Unlock()
			t.Logf("%s: sent %d, failed %d (window %s, %v); old pods gone at %v; before the client knew every instance: %d sent, %d failed (not counted)",
				tc.name, rep.Sent, rep.Failed, rep.Window.Round(time.Millisecond), rep.Errors, rep.Gone, rep.Warmup, rep.WarmupFailed)
			// A hook that failed in a replaced pod (its offline step not
			// confirmed, a bad argument) exited non-zero, and the kubelet
			// says so. (The new pods' hooks are cut short on purpose by
			// the cleanup's one-second grace period.)
			if evs, err := n.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=FailedPreStopHook"}); err != nil {
				t.Error(err)
			} else {
				for _, e := range evs.Items {
					if !slices.Contains(rep.OldPods, e.InvolvedObject.Name) {
						continue
					}
					// The event keeps the hook's output out of the API;
					// the kubelet's log has it.
					var hook []string
					for _, l := range strings.Split(n.KubeletLogAbout(e.InvolvedObject.Name, 200), "\n") {
						if strings.Contains(l, "PreStop") {
							hook = append(hook, l)
						}
					}
					t.Errorf("%s: %s %s: %s; the kubelet logged:\n%s", tc.name, e.InvolvedObject.Name, e.Reason, e.Message, strings.Join(hook, "\n"))
				}
			}
			switch {
			case tc.lossless && rep.Failed > 0:
				t.Errorf("%s lost %d of %d requests (%v) in a %s window; the right setting must lose none", tc.name, rep.Failed, rep.Sent, rep.Errors, rep.Window)
			case !tc.lossless && fullMeasure() && rep.Failed == 0:
				t.Errorf("%s lost nothing: the measurement shows no difference from the right setting", tc.name)
			}
		})
	}
}

// rolloutDeployment is the measured app: testapp behind a readiness
// probe, replaced one pod at a time (maxSurge 1, maxUnavailable 0).
func rolloutDeployment(ns string, replicas int32, ann map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	pod := appPod(ns, "")
	pod.Spec.TerminationGracePeriodSeconds = nil
	// POD_IP, which testapp registers with, comes with a registry's
	// environment (rollout.Registry.Env); a second one here made the API
	// server warn of a duplicate on every pod.
	one := intstr.FromInt32(1)
	zero := intstr.FromInt32(0)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &zero}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann}, Spec: pod.Spec},
		},
	}
}

// loadavg is /proc/loadavg's first three fields.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// registryPods runs test/registry's Eureka, Nacos and Consul agent
// stand-ins in pods outside the mesh (test/node/cmd/registry), at once,
// and returns them as the rollout harness reads them. Every case
// registers its own application, so one of each serves all.
func registryPods(t *testing.T, n *nodeharness.Node) map[string]rollout.Registry {
	t.Helper()
	ctx := t.Context()
	const ns = "ro-registries"
	if err := n.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	kinds := []string{"eureka", "nacos", "consul"}
	pods := make([]*corev1.Pod, len(kinds))
	errs := make([]error, len(kinds))
	var wg sync.WaitGroup
	for i, kind := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pods[i], _, errs[i] = n.RunPod(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: kind, Namespace: ns},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr(int64(1)),
					Containers: []corev1.Container{{
						Name: "registry", Image: images.RegistryRef, ImagePullPolicy: corev1.PullIfNotPresent,
						Args: []string{"--kind=" + kind, "--listen=:8080"},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
					}},
				},
			})
		}()
	}
	wg.Wait()
	out := map[string]rollout.Registry{}
	for i, kind := range kinds {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		addr := hostPort(mustIP(t, pods[i], false), 8080)
		switch kind {
		case "eureka":
			out[kind] = rollout.Eureka{URL: "http://" + addr + "/eureka"}
		case "nacos":
			out[kind] = rollout.Nacos{Addr: addr}
		case "consul":
			out[kind] = rollout.Consul{Addr: addr}
		}
		t.Logf("registry STAND-IN (test/registry %s) in pod %s/%s at %s", kind, ns, kind, addr)
	}
	return out
}
