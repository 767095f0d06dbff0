package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CaptureMode chooses who writes a pod's capture rules.
type CaptureMode string

// The capture modes (docs/capture.md compares them).
const (
	// CaptureInit: the mesh-init init container writes them; it runs as
	// root with NET_ADMIN and NET_RAW, which Pod Security baseline and
	// restricted refuse.
	CaptureInit CaptureMode = "init"
	// CaptureCNI: the node's mesh-cni plugin (the chart's cni.enabled
	// DaemonSet) writes them when the pod's network is set up, from the
	// annotation the injector adds; the pod gets an unprivileged init
	// container that checks them and installs the hook tool. Pods pass Pod
	// Security restricted.
	CaptureCNI CaptureMode = "cni"
)

func (m CaptureMode) validate(path *field.Path) field.ErrorList {
	switch m {
	case CaptureInit, CaptureCNI:
		return nil
	}
	return field.ErrorList{problem(field.ErrorTypeNotSupported, path, m,
		fmt.Sprintf("%q is not init (an init container with NET_ADMIN writes the rules) or cni (the node's mesh-cni plugin does)", m))}
}
