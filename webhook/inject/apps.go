package inject

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// editApps records what each app container gets: the tools volume, the
// preStop hook (registry offline, sleep, then its own handler) and, in a
// classic-mode run-to-completion pod, its command wrapped so the proxy
// quits when it is done. The container that registers with the registry
// also gets the state volume and a postStart hook that undoes the offline
// step after a restart in place. It returns the warnings, container by
// container.
func editApps(pod *corev1.Pod, r *Rendered, ch *Changes) ([]string, error) {
	var warnings []string
	s := r.Settings
	needPreStop := s.Lifecycle.Drain() > 0 || offlineBudget(s) > 0
	isJob := isRunToCompletion(pod)
	registered, why, err := registryContainer(pod, s)
	if err != nil {
		return nil, err
	}
	if why != "" {
		warnings = append(warnings, why)
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		edit := AppEdit{Index: i, Mounts: []corev1.VolumeMount{{Name: DefaultNames.ToolsVolume, MountPath: DefaultPaths.ToolsDir, ReadOnly: true}}}
		change := AppChange{Name: c.Name, Mounts: []string{DefaultNames.ToolsVolume}}
		withRegistry := needPreStop && c.Name == registered
		if withRegistry {
			edit.Mounts = append(edit.Mounts, corev1.VolumeMount{Name: DefaultNames.StateVolume, MountPath: DefaultPaths.StateDir})
			change.Mounts = append(change.Mounts, DefaultNames.StateVolume)
		}
		if c.Lifecycle != nil {
			change.HadLifecycle = true
		}
		if needPreStop {
			base := r.AppPreStop
			if withRegistry {
				// The record is per container: the state volume is shared.
				base.Exec = &corev1.ExecAction{Command: append(append([]string(nil), base.Exec.Command...), "--record="+DefaultPaths.Record(c.Name))}
			} else if offlineBudget(s) > 0 {
				// Another container registers: this one only drains.
				base.Exec = &corev1.ExecAction{Command: toolCommand(DefaultPaths.Tool, "prestop", meshinit.PreStop{
					Registry: meshinit.Registry{Preset: meshinit.PresetNone}, Sleep: meshinit.Duration(int64(s.Lifecycle.Drain()) * 1e9)}.Args())}
			}
			handler, warn := appPreStop(c, base)
			if warn != "" {
				warnings = append(warnings, warn)
			}
			if handler != nil {
				if c.Lifecycle != nil {
					change.PreStop = c.Lifecycle.PreStop
				}
				change.SetPreStop = true
				edit.PreStop = handler
			}
		}
		if withRegistry {
			handler, warn := appPostStart(c, s.Lifecycle.Registry)
			if warn != "" {
				warnings = append(warnings, warn)
			}
			if handler != nil {
				if c.Lifecycle != nil {
					change.PostStart = c.Lifecycle.PostStart
				}
				change.SetPostStart = true
				edit.PostStart = handler
			}
		}
		if isJob && !r.Native {
			switch {
			case len(pod.Spec.Containers) > 1:
				if i == 0 {
					warnings = append(warnings, fmt.Sprintf(
						"this run-to-completion pod has %d containers; with a classic sidecar none of them can tell the proxy that the last one has finished, so the proxy keeps the pod running; use native sidecars (%snative-sidecar: \"true\", Kubernetes 1.29+)",
						len(pod.Spec.Containers), policy.Prefix))
				}
			case len(c.Command) > 0:
				change.Command = c.Command
				change.SetCommand = true
				edit.Command = toolCommand(DefaultPaths.Tool, "run", meshinit.Run{
					ReadyURL:     readyURLIf(s),
					ReadyTimeout: s.Lifecycle.ProxyReadyTimeout,
					QuitURL:      fmt.Sprintf("http://127.0.0.1:%d/quitquitquit", s.Proxy.Ports.Admin),
					// With OnFailure the kubelet reruns a failed command,
					// which needs the proxy: quit only once it succeeded.
					QuitOnFailure: pod.Spec.RestartPolicy == corev1.RestartPolicyNever,
					Command:       c.Command,
				}.Args())
			default:
				warnings = append(warnings, fmt.Sprintf(
					"container %q has no command, so the classic sidecar cannot be told when it exits and will keep this run-to-completion pod running; set the container's command or use native sidecars (%snative-sidecar: \"true\", Kubernetes 1.29+)",
					c.Name, policy.Prefix))
			}
		}
		if !change.SetPreStop && !change.SetPostStart {
			change.HadLifecycle = false
		}
		ch.Apps = append(ch.Apps, edit)
		ch.Status.Apps = append(ch.Status.Apps, change)
	}
	return warnings, nil
}

// registryEnv are the environment variable prefixes that show a container
// carries a registry's settings, by preset.
var registryEnv = map[meshinit.Preset][]string{
	meshinit.PresetNacos:       {"SPRING_CLOUD_NACOS_", "NACOS_", "ALIBABA_ALIWARE_"},
	meshinit.PresetEureka:      {"EUREKA_"},
	meshinit.PresetConsul:      {"CONSUL_", "SPRING_CLOUD_CONSUL_"},
	meshinit.PresetDubbo:       {"DUBBO_"},
	meshinit.PresetSpringCloud: {"MANAGEMENT_", "SPRING_CLOUD_", "SPRING_APPLICATION_NAME"},
	meshinit.PresetEDAS:        {"ALIBABA_ALIWARE_", "EDAS_", "JAVA_TOOL_OPTIONS"},
}

// registryContainer picks the app container the offline step is for: the
// one the policy or annotation names, the only app container, or the one
// whose environment carries the registry's settings. When several or none
// do, the default container is chosen and a warning says how to choose.
// The others only drain: a preset pointed at a container without the
// registry's settings would fail at every stop.
func registryContainer(pod *corev1.Pod, s policy.Settings) (name, warning string, err error) {
	preset := s.Lifecycle.Registry.Preset
	if preset == "" || preset == meshinit.PresetNone {
		return "", "", nil
	}
	if n := s.Lifecycle.RegistryContainer; n != "" {
		if !slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == n }) {
			return "", "", &conflictError{ReasonInvalidAnnotation, fmt.Sprintf("%sregistry-container names %q, which is not an app container of this pod", policy.Prefix, n)}
		}
		return n, "", nil
	}
	if len(pod.Spec.Containers) == 1 {
		return pod.Spec.Containers[0].Name, "", nil
	}
	var carriers []string
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if hasAnyPrefix(e.Name, registryEnv[preset]) {
				carriers = append(carriers, c.Name)
				break
			}
		}
	}
	if len(carriers) == 1 {
		return carriers[0], "", nil
	}
	chosen := pod.Spec.Containers[0].Name
	if dc, ok := pod.Annotations[policy.DefaultContainerAnnotation]; ok {
		if _, found := usesContainer(pod, dc); found {
			chosen = dc
		}
	}
	what := "none of its app containers carries"
	if len(carriers) > 1 {
		what = fmt.Sprintf("%s all carry", strings.Join(carriers, ", "))
	}
	return chosen, fmt.Sprintf("the %s offline step is for container %q only: %s the registry's settings in its environment; the other containers only drain. Name the right one with %sregistry-container",
		preset, chosen, what, policy.Prefix), nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// appPostStart builds the registry container's postStart: the undo after
// a restart in place, then the container's own postStart handler.
func appPostStart(c *corev1.Container, reg meshinit.Registry) (*corev1.LifecycleHandler, string) {
	ps := meshinit.PostStart{Registry: reg, Record: DefaultPaths.Record(c.Name)}
	ps.Registry.Timeout = 0 // the offline timeout is prestop's
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		then, err := originalHandler(c, c.Lifecycle.PostStart)
		if err != nil {
			return nil, fmt.Sprintf("container %q keeps its own postStart handler, without the registry undo after a restart in place: %v", c.Name, err)
		}
		ps.Then = then
	}
	return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: toolCommand(DefaultPaths.Tool, "poststart", ps.Args())}}, ""
}

func readyURLIf(s policy.Settings) string {
	if !s.Lifecycle.HoldApplicationUntilProxyReady {
		return ""
	}
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.Proxy.Ports.Readiness, DefaultPaths.Readiness)
}

// isRunToCompletion reports whether the pod ends when its app exits (Job
// and CronJob pods, bare pods with restartPolicy Never or OnFailure).
func isRunToCompletion(pod *corev1.Pod) bool {
	if pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
		return true
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" {
			return true
		}
	}
	return false
}

// appPreStop builds an app container's preStop: the rendered offline +
// sleep command, followed by the container's own handler.
func appPreStop(c *corev1.Container, base corev1.LifecycleHandler) (*corev1.LifecycleHandler, string) {
	cmd := append([]string(nil), base.Exec.Command...)
	var orig *corev1.LifecycleHandler
	if c.Lifecycle != nil {
		orig = c.Lifecycle.PreStop
	}
	if orig != nil {
		then, err := originalHandler(c, orig)
		if err != nil {
			return nil, fmt.Sprintf("container %q keeps its own preStop handler without the registry offline step and drain sleep: %v", c.Name, err)
		}
		cmd = append(cmd, then.Args()...)
	}
	h := base
	h.Exec = &corev1.ExecAction{Command: cmd}
	return &h, ""
}

// originalHandler converts an app's own preStop handler for the hook tool.
func originalHandler(c *corev1.Container, h *corev1.LifecycleHandler) (meshinit.OriginalHandler, error) {
	switch {
	case h.Exec != nil:
		if len(h.Exec.Command) == 0 {
			return meshinit.OriginalHandler{}, fmt.Errorf("its exec handler has no command")
		}
		return meshinit.OriginalHandler{Exec: h.Exec.Command}, nil
	case h.HTTPGet != nil:
		g := h.HTTPGet
		port, err := resolvePort(c, g.Port)
		if err != nil {
			return meshinit.OriginalHandler{}, err
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		host := g.Host
		podIP := host == ""
		if podIP {
			// The kubelet calls the pod IP; the hook tool does too (it
			// finds the IP at hook time), with loopback as the fallback.
			// Both are local to the pod and never captured.
			host = "127.0.0.1"
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		o := meshinit.OriginalHandler{HTTPGet: fmt.Sprintf("%s://%s%s", scheme, hostPort(host, port), path), HTTPGetPodIP: podIP}
		for _, hd := range g.HTTPHeaders {
			// The hook tool refuses (exit 2, no sleep) a header it cannot
			// send; such a handler stays as it is.
			h := hd.Name + ": " + hd.Value
			if _, _, err := meshinit.ParseHeader(h); err != nil {
				return meshinit.OriginalHandler{}, fmt.Errorf("its httpGet header cannot be sent: %v", err)
			}
			o.HTTPHeaders = append(o.HTTPHeaders, h)
		}
		return o, nil
	case h.Sleep != nil:
		return meshinit.OriginalHandler{Sleep: meshinit.Duration(h.Sleep.Seconds * 1e9)}, nil
	}
	return meshinit.OriginalHandler{}, fmt.Errorf("its handler type (tcpSocket) cannot be run by the hook tool")
}

func hostPort(host string, port int32) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

func resolvePort(c *corev1.Container, p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		if !meshinit.IsPort(int64(p.IntVal)) {
			return 0, fmt.Errorf("its httpGet port %d is not a port", p.IntVal)
		}
		return p.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	names := make([]string, 0, len(c.Ports))
	for _, cp := range c.Ports {
		if cp.Name != "" {
			names = append(names, cp.Name)
		}
	}
	sort.Strings(names)
	return 0, fmt.Errorf("its httpGet port %q names no port of the container (named ports: %s)", p.StrVal, strings.Join(names, ", "))
}
