package inject

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/policy"
)

// Pod Security admission (the API server's PodSecurity plugin) judges the
// injected pod, not the one the user wrote: in a namespace that enforces
// baseline or restricted, what the injector adds can make the API server
// reject every pod after injection, with an error that never mentions the
// injector. The core reads the namespace's Pod Security labels and checks
// what it adds, from the rendered containers and volumes, against the
// level: a capture mode that needs no capability in the pod passes
// without a change here.

// The namespace labels of Pod Security admission.
const (
	PodSecurityEnforceLabel        = "pod-security.kubernetes.io/enforce"
	PodSecurityEnforceVersionLabel = "pod-security.kubernetes.io/enforce-version"
	PodSecurityWarnLabel           = "pod-security.kubernetes.io/warn"
	PodSecurityWarnVersionLabel    = "pod-security.kubernetes.io/warn-version"
	PodSecurityAuditLabel          = "pod-security.kubernetes.io/audit"
	PodSecurityAuditVersionLabel   = "pod-security.kubernetes.io/audit-version"
)

// psLevel is a Pod Security Standards level.
type psLevel int

const (
	psPrivileged psLevel = iota
	psBaseline
	psRestricted
)

func (l psLevel) String() string {
	return [...]string{"privileged", "baseline", "restricted"}[l]
}

// parsePSLevel reads a level label as Pod Security admission does: an
// unknown value enforces restricted (fail closed), an unknown warn or
// audit value is ignored (fail open).
func parsePSLevel(v string, enforce bool) psLevel {
	switch v {
	case "privileged":
		return psPrivileged
	case "baseline":
		return psBaseline
	case "restricted":
		return psRestricted
	}
	if enforce {
		return psRestricted
	}
	return psPrivileged
}

// baselineCapabilities are the capabilities baseline lets a container add
// (the container runtime's default set).
var baselineCapabilities = []corev1.Capability{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

// restrictedVolumes are the volume kinds restricted allows.
var restrictedVolumes = []string{"configMap", "downwardAPI", "emptyDir", "projected", "secret", "csi", "persistentVolumeClaim", "ephemeral", "image"}

// podSecurityFindings says what the injected containers and volumes of r
// violate at level, with the pod's own pod-level security context (which
// its containers inherit), one finding per container or volume. The
// checks are those of the Pod Security Standards (latest version) that
// concern a container or a volume; the pod's own containers are the
// author's business and are not judged here.
func podSecurityFindings(level psLevel, pod *corev1.Pod, r *Rendered) []string {
	if level == psPrivileged {
		return nil
	}
	var psc corev1.PodSecurityContext
	if pod.Spec.SecurityContext != nil {
		psc = *pod.Spec.SecurityContext
	}
	var out []string
	for _, c := range []*corev1.Container{&r.Init, &r.Proxy} {
		if problems := containerPSProblems(level, pod, psc, c); len(problems) > 0 {
			out = append(out, fmt.Sprintf("container %q %s", c.Name, strings.Join(problems, ", ")))
		}
	}
	for _, v := range r.Volumes {
		kind := volumeKind(v.VolumeSource)
		if kind == "hostPath" || (level == psRestricted && !slices.Contains(restrictedVolumes, kind)) {
			out = append(out, fmt.Sprintf("volume %q is of kind %s, which %s does not allow", v.Name, kind, level))
		}
	}
	return out
}

func containerPSProblems(level psLevel, pod *corev1.Pod, psc corev1.PodSecurityContext, c *corev1.Container) []string {
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	var p []string
	// Baseline, which restricted includes.
	if sc.Privileged != nil && *sc.Privileged {
		p = append(p, "is privileged")
	}
	if sc.Capabilities != nil {
		var extra []string
		for _, capability := range sc.Capabilities.Add {
			allowed := slices.Contains(baselineCapabilities, capability)
			if level == psRestricted {
				allowed = capability == "NET_BIND_SERVICE"
			}
			if !allowed {
				extra = append(extra, string(capability))
			}
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			p = append(p, fmt.Sprintf("adds the capabilities %s", strings.Join(extra, ", ")))
		}
	}
	for _, port := range c.Ports {
		if port.HostPort != 0 {
			p = append(p, fmt.Sprintf("uses hostPort %d", port.HostPort))
		}
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp != nil && seccomp.Type == corev1.SeccompProfileTypeUnconfined {
		p = append(p, "runs with seccomp profile Unconfined")
	}
	if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
		p = append(p, fmt.Sprintf("sets procMount %s", *sc.ProcMount))
	}
	if sc.AppArmorProfile != nil && sc.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined {
		p = append(p, "runs with AppArmor profile Unconfined")
	}
	if o := sc.SELinuxOptions; o != nil && (o.User != "" || o.Role != "" || !slices.Contains([]string{"", "container_t", "container_init_t", "container_kvm_t"}, o.Type)) {
		p = append(p, "sets SELinux options baseline does not allow")
	}
	if w := sc.WindowsOptions; w != nil && w.HostProcess != nil && *w.HostProcess {
		p = append(p, "is a Windows host process")
	}
	for _, h := range handlerHosts(c) {
		p = append(p, fmt.Sprintf("sets a host (%s) in a probe or lifecycle handler", h))
	}
	if level < psRestricted {
		return p
	}
	// Restricted.
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p = append(p, "does not set allowPrivilegeEscalation: false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		p = append(p, "does not drop ALL capabilities")
	}
	userNamespace := pod.Spec.HostUsers != nil && !*pod.Spec.HostUsers
	runAsNonRoot := sc.RunAsNonRoot
	if runAsNonRoot == nil {
		runAsNonRoot = psc.RunAsNonRoot
	}
	if !userNamespace && (runAsNonRoot == nil || !*runAsNonRoot) {
		p = append(p, "does not set runAsNonRoot: true")
	}
	runAsUser := sc.RunAsUser
	if runAsUser == nil {
		runAsUser = psc.RunAsUser
	}
	if runAsUser != nil && *runAsUser == 0 {
		p = append(p, "runs as root (runAsUser 0)")
	}
	if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
		p = append(p, "has no seccomp profile RuntimeDefault or Localhost")
	}
	return p
}

// handlerHosts are the hosts set in a container's httpGet and tcpSocket
// probes and lifecycle handlers (baseline since 1.34 forbids them).
func handlerHosts(c *corev1.Container) []string {
	var out []string
	add := func(h *corev1.ProbeHandler) {
		if h == nil {
			return
		}
		if h.HTTPGet != nil && h.HTTPGet.Host != "" {
			out = append(out, h.HTTPGet.Host)
		}
		if h.TCPSocket != nil && h.TCPSocket.Host != "" {
			out = append(out, h.TCPSocket.Host)
		}
	}
	for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if pr != nil {
			add(&pr.ProbeHandler)
		}
	}
	if c.Lifecycle != nil {
		for _, h := range []*corev1.LifecycleHandler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
			if h != nil {
				add(&corev1.ProbeHandler{HTTPGet: h.HTTPGet, TCPSocket: h.TCPSocket})
			}
		}
	}
	return out
}

// podSecurity decides what the namespace's Pod Security labels mean for
// the injection: a refusal (or, per the policy, a warning) where the
// namespace enforces a level what is added violates, and warnings where
// it only warns or audits at such a level.
func podSecurity(pod *corev1.Pod, ns Namespace, r *Rendered, pol *policy.Policy) (warnings []string, refusal *Decision) {
	version := func(label string) string {
		if v := ns.Labels[label]; v != "" {
			return v
		}
		return "latest"
	}
	if v, ok := ns.Labels[PodSecurityEnforceLabel]; ok {
		level := parsePSLevel(v, true)
		if findings := podSecurityFindings(level, pod, r); len(findings) > 0 {
			how := fmt.Sprintf("%s=%s", PodSecurityEnforceLabel, v)
			if level.String() != v {
				how += fmt.Sprintf(", which Pod Security reads as %s", level)
			}
			what := fmt.Sprintf("namespace %q enforces Pod Security level %q (%s, version %s), and what the injector adds would violate it, so the API server would reject the pod: %s",
				ns.Name, level, how, version(PodSecurityEnforceVersionLabel), strings.Join(findings, "; "))
			if r.Settings.Checks.PodSecurity == policy.Refuse {
				d := decide(Refused, ReasonPodSecurityViolation, what+". Ways out: label the namespace with a lower level ("+PodSecurityEnforceLabel+
					"=privileged); or exempt it in the API server's PodSecurity configuration and set checks.podSecurity: warn in policy "+
					fmt.Sprintf("%q", pol.Name)+"; or use a capture mode that needs no capabilities in the pod (the cni capture mode, once available); or keep this pod out of the mesh with "+
					policy.InjectKey+`: "false"`)
				return nil, &d
			}
			warnings = append(warnings, what+fmt.Sprintf("; injected all the same because checks.podSecurity is warn in policy %q: the API server rejects the pod unless the namespace is exempt in its PodSecurity configuration", pol.Name))
			return warnings, nil
		}
	}
	for _, mode := range []struct{ label, versionLabel, verb, effect string }{
		{PodSecurityWarnLabel, PodSecurityWarnVersionLabel, "warns at", "the API server will warn about"},
		{PodSecurityAuditLabel, PodSecurityAuditVersionLabel, "audits at", "the API server's audit log will record"},
	} {
		v, ok := ns.Labels[mode.label]
		if !ok {
			continue
		}
		level := parsePSLevel(v, false)
		if findings := podSecurityFindings(level, pod, r); len(findings) > 0 {
			warnings = append(warnings, fmt.Sprintf("namespace %q %s Pod Security level %q (%s=%s, version %s): %s what the injector adds: %s",
				ns.Name, mode.verb, level, mode.label, v, version(mode.versionLabel), mode.effect, strings.Join(findings, "; ")))
		}
	}
	return warnings, nil
}
