package harness

import (
	"net"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

func TestManifestsAndWebhookEdits(t *testing.T) {
	objs, err := Manifests([]byte("---\n# empty\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: m}\nwebhooks:\n- name: a.example.com\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  clientConfig: {service: {name: s, namespace: n}}\n"))
	if err != nil || len(objs) != 2 {
		t.Fatalf("%d objects, %v", len(objs), err)
	}
	if Find(objs, "Service") == nil || Find(objs, "Deployment") != nil {
		t.Error("Find")
	}
	mwc, err := WebhookConfiguration(objs)
	if err != nil {
		t.Fatal(err)
	}
	PointAt(mwc, "https://127.0.0.1:1/inject", []byte("ca"))
	Scope(mwc, "suite", "x")
	w := mwc.Webhooks[0]
	if w.ClientConfig.Service != nil || *w.ClientConfig.URL != "https://127.0.0.1:1/inject" || string(w.ClientConfig.CABundle) != "ca" {
		t.Errorf("PointAt: %+v", w.ClientConfig)
	}
	if !scoped(w, "suite", "x") {
		t.Errorf("Scope: %+v", w.NamespaceSelector)
	}
}

func scoped(w admissionregistrationv1.MutatingWebhook, k, v string) bool {
	if w.NamespaceSelector == nil {
		return false
	}
	if w.NamespaceSelector.MatchLabels[k] == v {
		return true
	}
	for _, e := range w.NamespaceSelector.MatchExpressions {
		if e.Key == k && len(e.Values) == 1 && e.Values[0] == v {
			return true
		}
	}
	return false
}

func TestFreeAddr(t *testing.T) {
	a, err := FreeAddr()
	if err != nil || !strings.HasPrefix(a, "127.0.0.1:") {
		t.Fatalf("%q %v", a, err)
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("the address is not free: %v", err)
	}
	ln.Close()
}
