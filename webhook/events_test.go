package webhook

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/client-go/tools/record"

	"github.com/sidecar-injector/injector/webhook/inject"
)

// A pod of an enabled namespace that is skipped or refused leaves an
// Event on its controller (not for dry-run, not without a controller, not
// when it is already injected or in a namespace that is not enabled).
// Rate limiting is client-go's correlator's, proven in the e2e tier.
func TestEventsOnTheOwner(t *testing.T) {
	e, err := inject.Compile(nil, inject.Options{NativeSidecarsSupported: true})
	require.NoError(t, err)
	rec := record.NewFakeRecorder(10)
	rec.IncludeObject = true
	h := NewHandler(e, StaticNamespaces{"shop": {"sidecar-injector.io/injection": "enabled"}}, nil, nil)
	h.SetEventRecorder(rec)

	owned := func(annotations string) []byte {
		return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-7c9d-","namespace":"shop",` + annotations +
			`"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7c9d","uid":"5f0c2b7e","controller":true}]},` +
			`"spec":{"containers":[{"name":"web","image":"web:1"}]}}`)
	}
	admit := func(ns string, pod []byte, dryRun bool) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", InjectPath, strings.NewReader(string(review("u", admissionv1.Create, ns, "Pod", pod, dryRun))))
		r.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(w, r)
		require.Equal(t, 200, w.Code)
	}
	next := func() string {
		select {
		case ev := <-rec.Events:
			return ev
		default:
			return ""
		}
	}

	admit("shop", owned(`"annotations":{"sidecar-injector.io/inject":"false"},`), false)
	assert.Equal(t, `Normal InjectionSkipped pod web-7c9d-*: skipped (pod_opted_out): the pod opts out with annotation sidecar-injector.io/inject "false" involvedObject{kind=ReplicaSet,apiVersion=apps/v1}`, next())

	admit("shop", owned(`"annotations":{"sidecar-injector.io/drain-seconds":"soon"},`), false)
	ev := next()
	assert.True(t, strings.HasPrefix(ev, "Warning InjectionRefused pod web-7c9d-*: refused (invalid_annotation): sidecar-injector.io/drain-seconds"), ev)

	// None for a dry run, an injected pod, a namespace not enabled, a pod
	// without a controller.
	admit("shop", owned(`"annotations":{"sidecar-injector.io/inject":"false"},`), true)
	admit("shop", owned(""), false)
	admit("elsewhere", owned(`"labels":{"sidecar-injector.io/inject":"true"},"annotations":{"sidecar-injector.io/drain-seconds":"soon"},`), false)
	admit("shop", []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bare","namespace":"shop","annotations":{"sidecar-injector.io/inject":"false"}},"spec":{"containers":[{"name":"web","image":"web:1"}]}}`), false)
	assert.Empty(t, next())
}
