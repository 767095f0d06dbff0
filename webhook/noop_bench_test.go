package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
)

// noOpHandler answers every review "allowed" for its uid with no patch.
// Four ways of finding the uid are measured (BenchmarkNoOp):
//
//   - conventional: the whole AdmissionReview decoded with encoding/json
//     and the response encoded with it, what a no-op webhook is when
//     written the obvious way; the anchor for issue 18's "at most 2x the
//     no-op" (docs/performance.md says why);
//   - stdlib: encoding/json into struct{Request{UID}}, the e2e tier's
//     trivial webhook and test/istio-anchor's anchortest.NoOp;
//   - jsonv2: the same struct with github.com/go-json-experiment/json, the
//     library our edge decodes with;
//   - streaming: a jsontext decoder that skips every other value, the
//     least any correct webhook can do (reading the body once).
type noOpHandler struct {
	buf  bytes.Buffer
	mode string
}

var errNoUID = errors.New("no request.uid")

func (h *noOpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.buf.Reset()
	if _, err := h.buf.ReadFrom(r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var uid string
	var err error
	var rev struct {
		Request struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	switch h.mode {
	case "streaming":
		uid, err = reviewUID(h.buf.Bytes())
	case "jsonv2":
		err = jsonv2.Unmarshal(h.buf.Bytes(), &rev)
		uid = rev.Request.UID
	case "conventional":
		// What a webhook written the obvious way does (and issue 18's
		// independent check): the whole AdmissionReview decoded with
		// encoding/json, the response encoded with it.
		var full admissionv1.AdmissionReview
		if err := json.Unmarshal(h.buf.Bytes(), &full); err != nil || full.Request == nil || full.Request.UID == "" {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{TypeMeta: full.TypeMeta,
			Response: &admissionv1.AdmissionResponse{UID: full.Request.UID, Allowed: true}})
		return
	default:
		err = json.Unmarshal(h.buf.Bytes(), &rev)
		uid = rev.Request.UID
	}
	if err == nil && uid == "" {
		err = errNoUID
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	out := make([]byte, 0, 160)
	out = append(out, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":`...)
	out, _ = jsontext.AppendQuote(out, uid)
	out = append(out, `,"allowed":true}}`...)
	_, _ = w.Write(out)
}

// reviewUID walks the review's top level and its request object and
// returns request.uid, skipping every other value without building it.
func reviewUID(body []byte) (string, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	enter := func() error {
		t, err := dec.ReadToken()
		if err != nil {
			return err
		}
		if t.Kind() != '{' {
			return errNoUID
		}
		return nil
	}
	if err := enter(); err != nil {
		return "", err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return "", err
		}
		if name.String() != "request" {
			if err := dec.SkipValue(); err != nil {
				return "", err
			}
			continue
		}
		if err := enter(); err != nil {
			return "", err
		}
		for dec.PeekKind() != '}' {
			k, err := dec.ReadToken()
			if err != nil {
				return "", err
			}
			if k.String() == "uid" {
				v, err := dec.ReadToken()
				if err != nil {
					return "", err
				}
				return v.String(), nil
			}
			if err := dec.SkipValue(); err != nil {
				return "", err
			}
		}
		return "", errNoUID
	}
	return "", errNoUID
}

func TestNoOpHandlerAnswersTheUID(t *testing.T) {
	body := []byte(`{"kind":"AdmissionReview","request":{"object":{"a":[1,2,{"uid":"wrong"}]},"uid":"u-1"}}`)
	uid, err := reviewUID(body)
	if err != nil || uid != "u-1" {
		t.Fatalf("reviewUID = %q, %v; want u-1", uid, err)
	}
	if _, err := reviewUID([]byte(`{"request":{}}`)); err == nil {
		t.Fatal("a review without uid must be an error")
	}
}

// BenchmarkNoOp is noOpHandler on the bench review, run the same way as
// BenchmarkAdmission (same request, same discarding writer).
func BenchmarkNoOp(b *testing.B) {
	body := benchReview(b)
	if uid, err := reviewUID(body); err != nil || uid == "" {
		b.Fatalf("the bench review's uid: %q, %v", uid, err)
	}
	for _, mode := range []string{"conventional", "stdlib", "jsonv2", "streaming"} {
		b.Run(mode, func(b *testing.B) {
			h := &noOpHandler{mode: mode}
			rd := bytes.NewReader(body)
			req, _ := http.NewRequest(http.MethodPost, InjectPath, rd)
			req.Header.Set("Content-Type", "application/json")
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rd.Reset(body)
				req.Body = io.NopCloser(rd)
				w.n = 0
				h.ServeHTTP(w, req)
			}
		})
	}
}
