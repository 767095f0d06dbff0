package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// review is an AdmissionReview body split around its request.uid, so each
// request can carry a unique uid without copying or re-encoding the 7.8 KB
// document: the prefix and suffix are shared (read-only) by every request,
// only the 36-byte uid is new.
type review struct {
	prefix, suffix []byte
	origUID        string
	run            [8]byte // random per run, so uids from two runs never collide
	seq            atomic.Uint64
}

func newReview(body []byte) (*review, error) {
	start, end, err := locateRequestUID(body)
	if err != nil {
		return nil, err
	}
	r := &review{prefix: body[:start], suffix: body[end:], origUID: string(body[start:end])}
	if _, err := rand.Read(r.run[:]); err != nil {
		return nil, err
	}
	return r, nil
}

// size is the length of every body.
func (r *review) size() int { return len(r.prefix) + uidLen + len(r.suffix) }

const uidLen = 36

// nextUID returns a new RFC 4122-shaped (version 4, variant 10) uid: 64 bits
// of the run's random prefix and a 64-bit sequence number, formatted
// without fmt.
func (r *review) nextUID() [uidLen]byte {
	n := r.seq.Add(1)
	var raw [16]byte
	copy(raw[:8], r.run[:])
	for i := range 8 {
		raw[15-i] = byte(n >> (8 * i))
	}
	raw[6] = 0x40 | raw[6]&0x0f
	raw[8] = 0x80 | raw[8]&0x3f
	const hexd = "0123456789abcdef"
	var out [uidLen]byte
	j := 0
	for i, b := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexd[b>>4], hexd[b&0x0f]
		j += 2
	}
	return out
}

// body returns a reader of the review with uid as request.uid.
func (r *review) body(uid *[uidLen]byte) *splicedBody {
	return &splicedBody{parts: [3][]byte{r.prefix, uid[:], r.suffix}}
}

// splicedBody reads three byte slices in order without copying them first.
type splicedBody struct {
	parts [3][]byte
	i     int
}

// Read fills p across the parts: a transport writes what one Read returns
// as one chunk (HTTP/2: a DATA frame and a flush each), so returning the
// parts one by one would cost three TLS records and syscalls per request.
func (b *splicedBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && b.i < len(b.parts) {
		c := copy(p[n:], b.parts[b.i])
		b.parts[b.i] = b.parts[b.i][c:]
		n += c
		if len(b.parts[b.i]) == 0 {
			b.i++
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (b *splicedBody) Close() error { return nil }

// locateRequestUID finds the byte range of request.uid's value (inside its
// quotes) by walking the JSON tokens, so a uid elsewhere in the object (an
// owner reference, the user's uid) can never be patched by mistake.
func locateRequestUID(body []byte) (start, end int, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	// path holds, for each open object or array, the key being read (""
	// for arrays); keyNext says whether the next string token is a key.
	type frame struct {
		object  bool
		key     string
		keyNext bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return 0, 0, errors.New("the review has no request.uid")
		}
		if err != nil {
			return 0, 0, fmt.Errorf("the review is not valid JSON: %w", err)
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				stack = append(stack, frame{object: d == '{', keyNext: d == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].keyNext = true
				}
			}
			continue
		}
		if len(stack) == 0 {
			return 0, 0, errors.New("the review is not a JSON object")
		}
		top := &stack[len(stack)-1]
		if !top.object {
			continue
		}
		if top.keyNext {
			top.key, _ = tok.(string)
			top.keyNext = false
			continue
		}
		// A scalar value of key top.key.
		if len(stack) == 2 && stack[0].key == "request" && top.key == "uid" {
			s, ok := tok.(string)
			if !ok {
				return 0, 0, errors.New("request.uid is not a string")
			}
			end := int(dec.InputOffset()) // just after the closing quote
			quoted, _ := json.Marshal(s)
			start := end - len(quoted)
			if start < 0 || !bytes.Equal(body[start:end], quoted) {
				return 0, 0, errors.New("request.uid uses JSON escapes; give it a plain uid")
			}
			return start + 1, end - 1, nil
		}
		top.keyNext = true
	}
}

// admissionResponse is the part of a response AdmissionReview that is
// checked. Patch is base64 in JSON; encoding/json decodes it into bytes.
type admissionResponse struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Response   *struct {
		UID       string  `json:"uid"`
		Allowed   bool    `json:"allowed"`
		Patch     []byte  `json:"patch"`
		PatchType *string `json:"patchType"`
		Status    *struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

// Error kinds, stable strings used as keys in the report.
const (
	errTransport   = "transport"      // dial, TLS, reset, ... (no HTTP response)
	errTimeout     = "timeout"        // no complete response within --timeout
	errProtocol    = "wrong_protocol" // negotiated another HTTP version than --proto
	errReadBody    = "read_body"      // the response body could not be read
	errBadReview   = "bad_review"     // not JSON, not an AdmissionReview or no response
	errUIDMismatch = "uid_mismatch"   // response.uid is not the request's uid
	errNotAllowed  = "not_allowed"    // allowed false
	errNoPatch     = "no_patch"       // no JSONPatch, or not a JSON array of operations
)

// httpStatusKind names a non-200 answer.
func httpStatusKind(code int) string { return fmt.Sprintf("http_%d", code) }

// verify checks one response body against the uid that was sent. It returns
// "" when the answer is what the API server needs: an AdmissionReview with
// the same uid, allowed, with a JSON Patch.
//
// The answer is ~19 KB, almost all of it the base64 patch, and decoding it
// with encoding/json costs ~150 µs of the CPU the server needs (the tool
// shares the machine). So the patch string is cut out with a byte search
// (base64 has no quotes or escapes), base64-decoded on its own, and only
// the few hundred remaining bytes go through encoding/json. When the cut is
// not provably response.patch, the whole answer is decoded instead.
func verify(body []byte, uid string) (kind, detail string) {
	r, ok := decodeFast(body)
	if !ok {
		r = admissionResponse{}
		if err := json.Unmarshal(body, &r); err != nil {
			return errBadReview, err.Error()
		}
	}
	return check(&r, uid)
}

// patchSentinel replaces the patch in the cut answer: a valid base64 string
// that no real patch equals.
const patchSentinel = "cGF0Y2gtc2VudGluZWw=" // "patch-sentinel"

var patchKey = []byte(`"patch":"`)

func decodeFast(body []byte) (admissionResponse, bool) {
	var r admissionResponse
	i := bytes.Index(body, patchKey)
	if i < 0 {
		return r, false
	}
	start := i + len(patchKey)
	n := bytes.IndexByte(body[start:], '"')
	if n < 0 {
		return r, false
	}
	b64 := body[start : start+n]
	if bytes.IndexByte(b64, '\\') >= 0 {
		return r, false
	}
	patch := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	m, err := base64.StdEncoding.Decode(patch, b64)
	if err != nil {
		return r, false
	}
	rest := make([]byte, 0, len(body)-n+len(patchSentinel))
	rest = append(rest, body[:start]...)
	rest = append(rest, patchSentinel...)
	rest = append(rest, body[start+n:]...)
	if err := json.Unmarshal(rest, &r); err != nil {
		return r, false
	}
	// The cut must have been response.patch itself (not a key named
	// "patch" in some map), and the only one.
	if r.Response == nil || string(r.Response.Patch) != "patch-sentinel" || bytes.Contains(body[start+n:], patchKey) {
		return r, false
	}
	r.Response.Patch = patch[:m]
	return r, true
}

func check(r *admissionResponse, uid string) (kind, detail string) {
	if r.Kind != "AdmissionReview" || r.Response == nil {
		return errBadReview, fmt.Sprintf("kind %q, apiVersion %q, response present %v", r.Kind, r.APIVersion, r.Response != nil)
	}
	resp := r.Response
	if resp.UID != uid {
		return errUIDMismatch, fmt.Sprintf("sent %s, got %q", uid, resp.UID)
	}
	if !resp.Allowed {
		msg := ""
		if resp.Status != nil {
			msg = fmt.Sprintf("%d %s", resp.Status.Code, resp.Status.Message)
		}
		return errNotAllowed, msg
	}
	p := bytes.TrimSpace(resp.Patch)
	if resp.PatchType == nil || *resp.PatchType != "JSONPatch" || len(p) < 2 || p[0] != '[' || p[len(p)-1] != ']' || bytes.IndexByte(p, '{') < 0 {
		// Not a JSON Patch, or an empty one ("[]": nothing injected).
		pt := "<none>"
		if resp.PatchType != nil {
			pt = *resp.PatchType
		}
		return errNoPatch, fmt.Sprintf("patchType %s, %d patch bytes", pt, len(resp.Patch))
	}
	return "", ""
}
