package meshinit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// CNIAnnotation is the pod annotation the injector writes in the cni
// capture mode: the pod's capture settings as CaptureConfig.Args renders
// them, separated by spaces. The mesh-cni plugin on the node reads it when
// the pod's network is set up (containerd hands a plugin that declares the
// io.kubernetes.cri.pod-annotations capability every pod annotation) and
// writes exactly the rules `mesh-init capture` would write with the same
// arguments; `mesh-init validate` checks them from inside the pod. One
// parser, ParseCaptureAnnotation, serves the plugin and the tests, so the
// two modes cannot disagree about a setting.
const CNIAnnotation = "sidecar-injector.io/cni-capture"

// AnnotationValue renders c as the value of CNIAnnotation: every
// CaptureConfig flag, defaults included, in Args' order. No value of a
// CaptureConfig flag contains white space, so a space separates them.
func (c CaptureConfig) AnnotationValue() string {
	return strings.Join(c.Args(), " ")
}

// ParseCaptureAnnotation reads the value of CNIAnnotation back into a
// CaptureConfig: the CaptureConfig flags only (the command flags of
// `mesh-init capture` — dry run, cleanup, copy, bootstrap — have no meaning
// on the node), starting from DefaultCaptureConfig, with the same value
// parsers and checks as ParseCaptureCommand. An error names the annotation
// and, through *FlagError, the flag and the value.
func ParseCaptureAnnotation(value string) (CaptureConfig, error) {
	fail := func(err error) (CaptureConfig, error) {
		return CaptureConfig{}, fmt.Errorf("annotation %s: %w", CNIAnnotation, err)
	}
	fields := strings.Fields(value)
	if len(fields) == 0 {
		return fail(&UsageError{Err: errors.New("is empty; the injector writes the capture flags there (such as --proxy-uid=1337 --outbound-port=15001 …)")})
	}
	for _, f := range fields {
		if !strings.HasPrefix(f, "--") || strings.HasPrefix(f, "---") {
			return fail(&UsageError{Err: fmt.Errorf("%q is not a --flag=value", f)})
		}
		if !strings.Contains(f, "=") {
			return fail(&UsageError{Err: fmt.Errorf("%q has no value (--flag=value)", f)})
		}
	}
	c := DefaultCaptureConfig()
	rest, err := parseSettings("annotation "+CNIAnnotation, configSettings(&c), fields, nil)
	if err != nil {
		return fail(err)
	}
	if len(rest) > 0 {
		return fail(&UsageError{Err: fmt.Errorf("unexpected %q", rest[0])})
	}
	if err := c.Validate(); err != nil {
		return fail(&UsageError{Err: err})
	}
	return c, nil
}

// SettingsRecordPrefix starts the record the mesh-cni plugin leaves in a
// pod's network namespace (as the alias of its loopback interface, which
// any process in the pod can read and only one with NET_ADMIN there can
// change) once it has written the rules: SettingsRecord of the settings
// it wrote them for.
const SettingsRecordPrefix = "mesh-cni settings sha256:"

// SettingsRecord is the record of c: the prefix and the SHA-256 of c's
// annotation value (canonical: every flag, in Args' order). `mesh-init
// validate` compares it with the record of the settings in its own
// arguments, which are part of the pod's immutable spec, while the
// annotation the plugin reads can be changed after admission.
func (c CaptureConfig) SettingsRecord() string {
	sum := sha256.Sum256([]byte(c.AnnotationValue()))
	return SettingsRecordPrefix + hex.EncodeToString(sum[:])
}
