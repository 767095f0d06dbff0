package webhook

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// maxRequestSize matches controller-runtime's admission.Webhook: two objects
// of at most 3 MB plus the rest of the review.
const maxRequestSize = 7 << 20

// reviewIn is the part of an AdmissionReview (v1 or v1beta1, which share
// their JSON) the handler reads. The object is decoded straight into the
// view of a pod the core needs (podView) in the same pass;
// controller-runtime's generic decoder parses the body twice and copies the
// object out as raw bytes first.
type reviewIn struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Request    *requestIn `json:"request"`
}

type requestIn struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Namespace   string                      `json:"namespace"`
	Operation   admissionv1.Operation       `json:"operation"`
	DryRun      *bool                       `json:"dryRun"`
	Object      *podView                    `json:"object"`
}

// rawReviewIn is the fallback when the object does not decode as a Pod:
// it keeps the object's bytes so the answer can say what is wrong with it,
// or allow a kind that is not a pod at all.
type rawReviewIn struct {
	APIVersion string `json:"apiVersion"`
	Request    *struct {
		requestIn
		Object json.RawMessage `json:"object"`
	} `json:"request"`
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// ServeHTTP is the admission endpoint. It answers exactly as
// controller-runtime's admission.Webhook wrapping Handle would (tests check
// this on every fixture and every kind of bad input), with one decoding pass
// and a response written around the pre-marshalled patch.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() {
		// A bug must cost one request a clear error, never the server.
		if p := recover(); p != nil {
			h.log.Error("panic while handling an admission", "panic", fmt.Sprint(p))
			resp := admission.Errored(http.StatusInternalServerError, fmt.Errorf("internal error: %v", p))
			h.write(w, "", "", &resp)
		}
	}()
	if r.Body == nil || r.Body == http.NoBody {
		h.writeError(w, "", http.StatusBadRequest, errors.New("request body is empty"))
		return
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	body, err := readBody((*bp)[:0], r.Body)
	*bp = body[:0]
	if err != nil {
		code := int32(http.StatusBadRequest)
		if errors.Is(err, errTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		h.writeError(w, "", code, err)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		h.writeError(w, "", http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct))
		return
	}
	in, apiVersion, err := decodeReview(body)
	if err != nil {
		h.writeError(w, apiVersion, http.StatusBadRequest, err)
		return
	}
	resp, d, pod := h.decide(r.Context(), in)
	h.record(in, d, pod, time.Since(start))
	h.write(w, apiVersion, in.uid, &resp)
}

var errTooLarge = fmt.Errorf("request entity is too large; limit is %d bytes", maxRequestSize)

func readBody(buf []byte, r io.Reader) ([]byte, error) {
	lr := &io.LimitedReader{R: r, N: maxRequestSize}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return buf, err
		}
	}
	if lr.N <= 0 {
		return buf, errTooLarge
	}
	return buf, nil
}

// decodeOptions make the decoder as lenient as encoding/json about
// duplicate keys and invalid UTF-8, and as strict as the API server about
// case: a field matches only its exact name (sigs.k8s.io/json's rule).
var decodeOptions = jsonv2.JoinOptions(
	jsontext.AllowDuplicateNames(true),
	jsontext.AllowInvalidUTF8(true),
)

// unmarshal decodes with github.com/go-json-experiment/json, the reference
// implementation of encoding/json/v2: on the bench review it decodes the
// review and the pod in about 45% of the time sigs.k8s.io/json takes, with
// half the allocations (docs/performance.md). Tests check that it decodes
// every fixture exactly as sigs.k8s.io/json does.
func unmarshal(b []byte, v any) error { return jsonv2.Unmarshal(b, v, decodeOptions) }

// decodeReview reads the review, decoding the pod in the same pass when it
// is one. The returned apiVersion is echoed in the answer.
func decodeReview(body []byte) (*admissionInput, string, error) {
	var rev reviewIn
	err := unmarshal(body, &rev)
	if err == nil {
		if rev.Request == nil {
			return &admissionInput{noRequest: true}, rev.APIVersion, nil
		}
		q := rev.Request
		in := &admissionInput{uid: q.UID, kind: q.Kind, resource: q.Resource, subResource: q.SubResource,
			namespace: q.Namespace, operation: q.Operation, dryRun: q.DryRun != nil && *q.DryRun}
		if q.Object != nil {
			in.pod = q.Object.pod()
		}
		if in.pod == nil {
			return in, rev.APIVersion, nil
		}
		if _, ok := in.pod.Annotations[policy.StatusAnnotation]; !ok {
			return in, rev.APIVersion, nil
		}
		// The core compares what a status annotation records with the
		// pod's containers and volumes in full (inject.StatusPodFields),
		// which the view leaves out: decode this rare pod in full.
	}
	// Not decodable as a review of a pod (is it a review at all?), or a
	// pod to decode in full: keep the object's bytes.
	var raw rawReviewIn
	if rerr := unmarshal(body, &raw); rerr != nil {
		return nil, "", rerr
	}
	if raw.Request == nil {
		return &admissionInput{noRequest: true}, raw.APIVersion, nil
	}
	q := raw.Request
	return &admissionInput{uid: q.UID, kind: q.Kind, resource: q.Resource, subResource: q.SubResource,
		namespace: q.Namespace, operation: q.Operation, dryRun: q.DryRun != nil && *q.DryRun, raw: q.Object}, raw.APIVersion, nil
}

// responseOut is an AdmissionResponse without the patch, which is appended
// by hand: it is by far the largest field and is already JSON.
type responseOut struct {
	UID              types.UID              `json:"uid"`
	Allowed          bool                   `json:"allowed"`
	Result           *metav1.Status         `json:"status,omitempty"`
	PatchType        *admissionv1.PatchType `json:"patchType,omitempty"`
	AuditAnnotations map[string]string      `json:"auditAnnotations,omitempty"`
	Warnings         []string               `json:"warnings,omitempty"`
}

var jsonPatchType = admissionv1.PatchTypeJSONPatch

func (h *Handler) writeError(w http.ResponseWriter, apiVersion string, code int32, err error) {
	d := inject.Decision{Result: inject.Refused, Reason: inject.ReasonMalformedRequest, Message: err.Error()}
	h.record(&admissionInput{}, d, nil, 0)
	resp := admission.Errored(code, err)
	h.write(w, apiVersion, "", &resp)
}

// write encodes the AdmissionReview answer. The patch operations are
// written as JSON directly, reusing pre-marshalled values, then base64
// encoded into the buffer.
func (h *Handler) write(w http.ResponseWriter, apiVersion string, uid types.UID, resp *admission.Response) {
	if apiVersion == "" {
		apiVersion = admissionv1.SchemeGroupVersion.String()
	}
	out := responseOut{UID: uid, Allowed: resp.Allowed, Result: resp.Result,
		AuditAnnotations: resp.AuditAnnotations, Warnings: resp.Warnings}
	if out.Result == nil {
		out.Result = &metav1.Status{}
	}
	if out.Result.Code == 0 {
		out.Result.Code = http.StatusOK
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]
	var patch []byte
	if len(resp.Patches) > 0 {
		out.PatchType = &jsonPatchType
		pp := bufPool.Get().(*[]byte)
		defer bufPool.Put(pp)
		var err error
		patch, err = appendPatch((*pp)[:0], resp.Patches)
		*pp = patch[:0]
		if err != nil {
			e := admission.Errored(http.StatusInternalServerError, err)
			h.write(w, apiVersion, uid, &e)
			return
		}
	}
	buf = append(buf, `{"kind":"AdmissionReview","apiVersion":`...)
	buf = appendJSONString(buf, apiVersion)
	buf = append(buf, `,"response":`...)
	buf, err := appendResponse(buf, &out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if patch != nil {
		buf = append(buf, `,"patch":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, patch)
		buf = append(buf, '"')
	}
	buf = append(buf, "}}\n"...)
	*bp = buf[:0]
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf)
}

// appendResponse writes out as json.Marshal would, without the closing
// brace, so the patch can follow. The envelope of every answer is written
// by hand: encoding/json's reflection over the struct and the sorting of
// the audit annotations' map cost a tenth of an admission's allocations.
// A status with more than a code, a message and a reason (never built
// here, but a Response may carry one) is marshalled.
func appendResponse(buf []byte, out *responseOut) ([]byte, error) {
	buf = append(buf, `{"uid":`...)
	buf = appendJSONString(buf, string(out.UID))
	buf = append(buf, `,"allowed":`...)
	buf = strconv.AppendBool(buf, out.Allowed)
	if st := out.Result; st != nil {
		buf = append(buf, `,"status":`...)
		if st.TypeMeta != (metav1.TypeMeta{}) || st.ListMeta.SelfLink != "" || st.ListMeta.ResourceVersion != "" ||
			st.ListMeta.Continue != "" || st.ListMeta.RemainingItemCount != nil || st.Details != nil {
			b, err := json.Marshal(st)
			if err != nil {
				return nil, err
			}
			buf = append(buf, b...)
		} else {
			buf = append(buf, `{"metadata":{}`...)
			if st.Status != "" {
				buf = append(buf, `,"status":`...)
				buf = appendJSONString(buf, st.Status)
			}
			if st.Message != "" {
				buf = append(buf, `,"message":`...)
				buf = appendJSONString(buf, st.Message)
			}
			if st.Reason != "" {
				buf = append(buf, `,"reason":`...)
				buf = appendJSONString(buf, string(st.Reason))
			}
			if st.Code != 0 {
				buf = append(buf, `,"code":`...)
				buf = strconv.AppendInt(buf, int64(st.Code), 10)
			}
			buf = append(buf, '}')
		}
	}
	if out.PatchType != nil {
		buf = append(buf, `,"patchType":`...)
		buf = appendJSONString(buf, string(*out.PatchType))
	}
	if len(out.AuditAnnotations) > 0 {
		buf = append(buf, `,"auditAnnotations":{`...)
		var stack [8]string
		keys := stack[:0]
		for k := range out.AuditAnnotations {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, k)
			buf = append(buf, ':')
			buf = appendJSONString(buf, out.AuditAnnotations[k])
		}
		buf = append(buf, '}')
	}
	if len(out.Warnings) > 0 {
		buf = append(buf, `,"warnings":[`...)
		for i, wn := range out.Warnings {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, wn)
		}
		buf = append(buf, ']')
	}
	return buf, nil
}

// appendPatch writes the operations as a JSON array; json.RawMessage values
// are copied as they are (they were produced by json.Marshal at load time).
func appendPatch(buf []byte, ops []jsonpatch.Operation) ([]byte, error) {
	buf = append(buf, '[')
	for i, op := range ops {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"op":`...)
		buf = appendJSONString(buf, op.Operation)
		buf = append(buf, `,"path":`...)
		buf = appendJSONString(buf, op.Path)
		if op.Operation != "remove" {
			buf = append(buf, `,"value":`...)
			switch v := op.Value.(type) {
			case json.RawMessage:
				buf = append(buf, v...)
			case *json.RawMessage:
				buf = append(buf, *v...)
			case []any:
				buf = append(buf, '[')
				for j, item := range v {
					if j > 0 {
						buf = append(buf, ',')
					}
					var err error
					if buf, err = appendValue(buf, item); err != nil {
						return nil, err
					}
				}
				buf = append(buf, ']')
			default:
				var err error
				if buf, err = appendValue(buf, v); err != nil {
					return nil, err
				}
			}
		}
		buf = append(buf, '}')
	}
	return append(buf, ']'), nil
}

func appendValue(buf []byte, v any) ([]byte, error) {
	switch t := v.(type) {
	case json.RawMessage:
		return append(buf, t...), nil
	case *json.RawMessage:
		return append(buf, *t...), nil
	case string:
		return appendJSONString(buf, t), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(buf, b...), nil
}

// appendJSONString appends s as a JSON string with jsontext.AppendQuote,
// which allocates nothing in a buffer with room (the status annotation, a
// few hundred bytes of JSON inside a string, is in every patch). Invalid
// UTF-8 becomes U+FFFD, as encoding/json makes it; AppendQuote's error only
// says it did that.
func appendJSONString(buf []byte, s string) []byte {
	buf, _ = jsontext.AppendQuote(buf, s)
	return buf
}
