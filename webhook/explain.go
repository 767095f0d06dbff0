package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/webhook/inject"
)

// maxExplainBody bounds a pod posted to /debug/explain.
const maxExplainBody = 1 << 20

// ExplainHandler serves /debug/explain on the metrics address:
//
//	GET  /debug/explain?namespace=shop            the namespace's policy and values
//	POST /debug/explain?namespace=shop  (pod YAML or JSON in the body)
//
// Labels come from the same source as admissions; the answer is what the
// webhook would decide right now, as JSON (or text with ?format=text).
func (h *Handler) ExplainHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ns := r.URL.Query().Get("namespace")
		var pod *corev1.Pod
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost:
			body, err := io.ReadAll(io.LimitReader(r.Body, maxExplainBody+1))
			if err != nil || len(body) > maxExplainBody {
				http.Error(w, "the pod must be at most 1 MiB of YAML or JSON", http.StatusBadRequest)
				return
			}
			pod = &corev1.Pod{}
			if err := yaml.UnmarshalStrict(body, pod); err != nil {
				http.Error(w, "the body is not a Pod: "+err.Error(), http.StatusBadRequest)
				return
			}
			if ns == "" {
				ns = pod.Namespace
			}
		default:
			http.Error(w, "use GET, or POST with a pod", http.StatusMethodNotAllowed)
			return
		}
		if ns == "" {
			http.Error(w, "give ?namespace=NAME (or a pod with metadata.namespace)", http.StatusBadRequest)
			return
		}
		labels, err := h.namespaces.Labels(r.Context(), ns)
		if err != nil {
			http.Error(w, fmt.Sprintf("namespace labels are not available: %v", err), http.StatusServiceUnavailable)
			return
		}
		x := h.Engine().Explain(pod, inject.Namespace{Name: ns, Labels: labels})
		if r.URL.Query().Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, x.Text())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(x)
	})
}
