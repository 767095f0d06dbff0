package main

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The demo's sample pods are valid pods, each with a comment saying what it
// shows (printed by the demo).
func TestSamplePods(t *testing.T) {
	entries, err := pods.ReadDir("pods")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 5 {
		t.Fatalf("%d sample pods", len(entries))
	}
	for _, e := range entries {
		b, err := pods.ReadFile("pods/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		var p corev1.Pod
		if err := yaml.UnmarshalStrict(b, &p); err != nil {
			t.Errorf("%s: %v", e.Name(), err)
		}
		if !strings.HasPrefix(string(b), "#") {
			t.Errorf("%s: no leading comment", e.Name())
		}
		if len(p.Spec.Containers) == 0 {
			t.Errorf("%s: no containers", e.Name())
		}
	}
}
