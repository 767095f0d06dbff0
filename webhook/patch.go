package webhook

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/webhook/inject"
)

// buildPatch turns the core's record of what injection changes into JSON
// Patch operations on the pod as sent (about 20x cheaper than diffing the
// JSON documents, and fields this build of the Kubernetes types does not
// know survive). orig is consulted only for where things are: whether a
// list, the metadata or a container's mounts were there before, because
// "add" of a whole member is the only way to create it.
//
// Operations on existing list elements come first, at their original
// indices; insertions follow in increasing final index, so each index is
// valid when its operation applies. Tests apply the patch to every fixture
// and compare with applying jsonpatch.CreatePatch's full diff.
func buildPatch(orig *corev1.Pod, ch *inject.Changes) []jsonpatch.Operation {
	ops := make([]jsonpatch.Operation, 0, 16)
	ops = annotationOps(ops, orig, ch.Annotations)
	for _, a := range ch.Apps {
		ops = appOps(ops, "/spec/containers/"+strconv.Itoa(a.Index), &orig.Spec.Containers[a.Index], a)
	}
	ops = insertOps(ops, "/spec/initContainers", len(orig.Spec.InitContainers), ch.Inserts, inject.InitContainers)
	ops = insertOps(ops, "/spec/containers", len(orig.Spec.Containers), ch.Inserts, inject.Containers)
	ops = insertOps(ops, "/spec/volumes", len(orig.Spec.Volumes), ch.Inserts, inject.Volumes)
	if ch.GracePeriod != nil {
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/terminationGracePeriodSeconds", *ch.GracePeriod))
	}
	if ch.Resources != nil {
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/resources", *ch.Resources))
	}
	return ops
}

// escape encodes a JSON pointer token (RFC 6901).
func escape(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// annotationOps adds the annotations, key by key where the pod has some,
// as a whole map where it has none ("add" replaces an absent, null or
// empty member alike), and inside a new metadata where the object has no
// metadata at all (the API server always sends some, but nothing
// guarantees it).
func annotationOps(ops []jsonpatch.Operation, orig *corev1.Pod, added []inject.Annotation) []jsonpatch.Operation {
	if len(added) == 0 {
		return ops
	}
	if len(orig.Annotations) > 0 {
		for _, a := range added {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations/"+escape(a.Key), a.Value))
		}
		return ops
	}
	m := make(map[string]string, len(added))
	for _, a := range added {
		m[a.Key] = a.Value
	}
	if reflect.DeepEqual(orig.ObjectMeta, metav1.ObjectMeta{}) {
		return append(ops, jsonpatch.NewOperation("add", "/metadata", map[string]any{"annotations": m}))
	}
	return append(ops, jsonpatch.NewOperation("add", "/metadata/annotations", m))
}

// appOps changes one app container at path: its mounts appended (or the
// list added whole where it had none), its preStop handler replaced (or a
// lifecycle block added where it had none), its command replaced.
func appOps(ops []jsonpatch.Operation, path string, orig *corev1.Container, a inject.AppEdit) []jsonpatch.Operation {
	if len(a.Mounts) > 0 {
		if len(orig.VolumeMounts) > 0 {
			for i := range a.Mounts {
				ops = append(ops, jsonpatch.NewOperation("add", path+"/volumeMounts/-", &a.Mounts[i]))
			}
		} else {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/volumeMounts", a.Mounts))
		}
	}
	if a.PreStop != nil || a.PostStart != nil {
		if orig.Lifecycle == nil {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/lifecycle", corev1.Lifecycle{PreStop: a.PreStop, PostStart: a.PostStart}))
		} else {
			if a.PostStart != nil {
				ops = append(ops, jsonpatch.NewOperation("add", path+"/lifecycle/postStart", *a.PostStart))
			}
			if a.PreStop != nil {
				ops = append(ops, jsonpatch.NewOperation("add", path+"/lifecycle/preStop", *a.PreStop))
			}
		}
	}
	if a.Command != nil {
		ops = append(ops, jsonpatch.NewOperation("add", path+"/command", a.Command))
	}
	return ops
}

// insertOps adds the inserts of one list at their final indices, or the
// list whole where the pod had none (absent, null or []). Values are the
// JSON marshalled when the policy loaded, never encoded again.
func insertOps(ops []jsonpatch.Operation, path string, origLen int, inserts []inject.Insert, list inject.List) []jsonpatch.Operation {
	var items []any
	for i := range inserts {
		in := &inserts[i]
		if in.List != list {
			continue
		}
		// A pointer into the record boxes without a copy of the slice
		// header; encoding/json and appendPatch write it as the raw JSON.
		var v any = (*json.RawMessage)(&in.JSON)
		if in.JSON == nil {
			v = in.Container
			if in.Volume != nil {
				v = in.Volume
			}
		}
		if origLen > 0 {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/"+strconv.Itoa(in.Index), v))
			continue
		}
		if items == nil {
			items = make([]any, 0, len(inserts))
		}
		items = append(items, v)
	}
	if len(items) > 0 {
		ops = append(ops, jsonpatch.NewOperation("add", path, items))
	}
	return ops
}
