package inject

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/policy"
)

// conflictError refuses a pod that already uses a name, path or port
// injection needs; reason says which.
type conflictError struct {
	reason Reason
	msg    string
}

func (e *conflictError) Error() string { return e.msg }

// checkConflicts finds app containers that would break the mesh. It returns
// warnings, or a refusal when the settings say refuse.
//
// The containers checked are those that run while capture is in place:
// every app container, and the pod's init containers that run after the
// proxy (all of them with native sidecars; in classic mode, only its own
// native sidecars, which keep running beside the proxy).
func checkConflicts(pod *corev1.Pod, s policy.Settings, native bool) ([]string, *Decision) {
	var warnings []string
	proxyPorts := s.Proxy.Ports.All()
	var podUID, podGID *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		podUID, podGID = psc.RunAsUser, psc.RunAsGroup
	}
	checked := make([]corev1.Container, 0, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
	for _, c := range pod.Spec.InitContainers {
		restartable := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if native || restartable {
			checked = append(checked, c)
		}
	}
	checked = append(checked, pod.Spec.Containers...)
	for _, c := range checked {
		uid, gid := podUID, podGID
		if c.SecurityContext != nil {
			if c.SecurityContext.RunAsUser != nil {
				uid = c.SecurityContext.RunAsUser
			}
			if c.SecurityContext.RunAsGroup != nil {
				gid = c.SecurityContext.RunAsGroup
			}
		}
		if (uid != nil && *uid == s.Proxy.UID) || (gid != nil && *gid == s.Proxy.GID) {
			what := fmt.Sprintf("UID %d", s.Proxy.UID)
			if uid == nil || *uid != s.Proxy.UID {
				what = fmt.Sprintf("GID %d", s.Proxy.GID)
			}
			msg := fmt.Sprintf("container %q runs as %s, the proxy's own identity, so its traffic would silently bypass the proxy; run it as another user and group (securityContext.runAsUser/runAsGroup)", c.Name, what)
			if s.Checks.ProxyUIDConflict == policy.Refuse {
				d := decide(Refused, ReasonProxyUIDConflict, msg)
				return nil, &d
			}
			warnings = append(warnings, msg)
		}
		for _, p := range c.Ports {
			for _, pp := range proxyPorts {
				if p.ContainerPort == pp && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
					msg := fmt.Sprintf("container %q declares port %d, which the proxy needs (ports %s are reserved), so the proxy could not start; move the app to another port or opt the pod out with %s: \"false\"",
						c.Name, p.ContainerPort, joinPorts(proxyPorts), policy.InjectKey)
					if s.Checks.ProxyPortConflict == policy.Refuse {
						d := decide(Refused, ReasonProxyPortConflict, msg)
						return nil, &d
					}
					warnings = append(warnings, msg)
				}
			}
		}
	}
	return warnings, nil
}

func joinPorts(ports []int32) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}

// checkMountPaths refuses an app container that already has something
// where the tools volume is mounted.
func checkMountPaths(pod *corev1.Pod) error {
	toolsDir := DefaultPaths.ToolsDir
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if path.Clean(m.MountPath) == toolsDir {
				return &conflictError{ReasonMountPathConflict, fmt.Sprintf(
					"container %q already mounts %s at %s, where the injector mounts its hook tool; move that mount", c.Name, m.Name, m.MountPath)}
			}
		}
		for _, d := range c.VolumeDevices {
			if path.Clean(d.DevicePath) == toolsDir {
				return &conflictError{ReasonMountPathConflict, fmt.Sprintf(
					"container %q has a device at %s, where the injector mounts its hook tool; move that device", c.Name, d.DevicePath)}
			}
		}
	}
	return nil
}

// checkVolumeNames refuses a pod that has, or mounts, a volume of a name
// injection adds.
func checkVolumeNames(pod *corev1.Pod, added []corev1.Volume) error {
	for _, v := range added {
		for _, existing := range pod.Spec.Volumes {
			if existing.Name == v.Name {
				return &conflictError{ReasonVolumeNameConflict, fmt.Sprintf(
					"the pod already has a volume named %q, which the injector adds; rename that volume", v.Name)}
			}
		}
		// A mount of a volume the pod does not declare would be refused by
		// the API server; once the injector adds a volume of that name,
		// the app would get the proxy's files instead.
		if c, ok := usesVolume(pod, v.Name); ok {
			return &conflictError{ReasonVolumeNameConflict, fmt.Sprintf(
				"container %q mounts a volume named %q that the pod does not declare; the injector adds a volume of that name for the proxy: declare and rename your volume", c, v.Name)}
		}
	}
	return nil
}

// checkPortNames finds containers whose port names are the proxy's: a
// Service or probe that selects the port by name would reach the proxy
// instead of the app. It warns or refuses as the policy says.
func checkPortNames(pod *corev1.Pod, proxy corev1.Container, action policy.ConflictAction) ([]string, error) {
	var warnings []string
	for _, p := range proxy.Ports {
		if p.Name == "" {
			continue
		}
		for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, c := range list {
				for _, cp := range c.Ports {
					if cp.Name != p.Name {
						continue
					}
					msg := fmt.Sprintf("container %q names its port %d %q, the name of the proxy's port %d; Services and probes that select it by name would reach the proxy: rename the port",
						c.Name, cp.ContainerPort, cp.Name, p.ContainerPort)
					if action == policy.Refuse {
						return nil, &conflictError{ReasonProxyPortConflict, msg}
					}
					warnings = append(warnings, msg)
				}
			}
		}
	}
	return warnings, nil
}

// usesContainer reports whether the pod has a container (app or init)
// with the name.
func usesContainer(pod *corev1.Pod, name string) (*corev1.Container, bool) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], true
			}
		}
	}
	return nil, false
}

// usesVolume returns a container that mounts (or uses as a device) the
// named volume.
func usesVolume(pod *corev1.Pod, name string) (string, bool) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, m := range c.VolumeMounts {
				if m.Name == name {
					return c.Name, true
				}
			}
			for _, d := range c.VolumeDevices {
				if d.Name == name {
					return c.Name, true
				}
			}
		}
	}
	return "", false
}
