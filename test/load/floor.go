package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/sidecar-injector/injector/webhook"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// The floor server answers the load the way the cheapest possible webhook
// would: the same TLS settings and HTTP stack as `injector serve` (Go's
// net/http, h2 and HTTP/1.1, TLS 1.2+), the request body read in full, and
// the injector's own answer to the review — computed once at start-up by
// the real handler — written back with the request's uid spliced in. No
// decoding, no decision, no patch building. Run beside the injector with
// the same load (`--spawn --floor`), it shows what the machine and the
// HTTP/TLS stack cost by themselves, so the injector's share of a latency
// figure can be told apart from the environment's.

const floorCommand = "floor-server"

// floorAnswer is the pre-rendered answer split around the response uid.
type floorAnswer struct {
	// reqLen is the length of every request body the load tool sends (the
	// review with a 36-byte uid); uidAt is where the uid starts in it.
	reqLen, uidAt  int
	prefix, suffix []byte
}

// newFloorAnswer runs the review through the injector's handler (built-in
// configuration, the given namespace labelled for injection) and splits the
// answer around the uid.
func newFloorAnswer(reviewBody []byte, injectNamespace string) (*floorAnswer, error) {
	start, end, err := locateRequestUID(reviewBody)
	if err != nil {
		return nil, err
	}
	if end-start != uidLen {
		return nil, fmt.Errorf("the review's request.uid is %d bytes; the floor server expects %d", end-start, uidLen)
	}
	h, err := injectorHandler(webhook.StaticNamespaces{injectNamespace: {"sidecar-injector.io/injection": "enabled"}})
	if err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, webhook.InjectPath, bytes.NewReader(reviewBody))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	answer := rec.Body.Bytes()
	if kind, detail := verify(answer, string(reviewBody[start:end])); kind != "" {
		return nil, fmt.Errorf("the injector's own answer to the review fails verification (%s): %s", kind, detail)
	}
	quoted := []byte(`"uid":"` + string(reviewBody[start:end]) + `"`)
	i := bytes.Index(answer, quoted)
	if i < 0 || bytes.Count(answer, quoted) != 1 {
		return nil, errors.New("the answer does not carry the request's uid exactly once")
	}
	i += len(`"uid":"`)
	return &floorAnswer{reqLen: len(reviewBody), uidAt: start,
		prefix: answer[:i:i], suffix: answer[i+uidLen:]}, nil
}

// injectorHandler is the admission handler `injector serve` mounts, with
// the built-in configuration and fixed namespace labels.
func injectorHandler(ns webhook.StaticNamespaces) (http.Handler, error) {
	engine, err := inject.Compile(nil, inject.Options{NativeSidecarsSupported: true})
	if err != nil {
		return nil, err
	}
	return webhook.NewHandler(engine, ns, nil, nil), nil
}

var floorBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func (a *floorAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bp := floorBufs.Get().(*[]byte)
	defer floorBufs.Put(bp)
	buf := (*bp)[:0]
	var err error
	for err == nil {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		var n int
		n, err = r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
	}
	if !errors.Is(err, io.EOF) || len(buf) != a.reqLen {
		*bp = buf[:0]
		http.Error(w, fmt.Sprintf("the floor server answers only the load tool's review (%d bytes), got %d bytes (%v)", a.reqLen, len(buf), err), http.StatusBadRequest)
		return
	}
	// The answer is built after the body in the same buffer.
	n := len(buf)
	buf = append(buf, a.prefix...)
	buf = append(buf, buf[a.uidAt:a.uidAt+uidLen]...)
	buf = append(buf, a.suffix...)
	*bp = buf[:0]
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf[n:])
}

// floorMain is `load floor-server --listen ADDR --cert-dir DIR [--body F]
// [--namespace NS]`; it serves /inject and /readyz until SIGTERM.
func floorMain(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(floorCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "HTTPS address")
	certDir := fs.String("cert-dir", "", "tls.crt and tls.key")
	bodyPath := fs.String("body", "", "the review the load tool sends (default: the embedded one)")
	namespace := fs.String("namespace", "shop", "the namespace labelled for injection")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "load floor-server:", err); return 1 }
	body := defaultReview
	if *bodyPath != "" {
		b, err := os.ReadFile(*bodyPath)
		if err != nil {
			return fail(err)
		}
		body = b
	}
	answer, err := newFloorAnswer(body, *namespace)
	if err != nil {
		return fail(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(*certDir, "tls.crt"), filepath.Join(*certDir, "tls.key"))
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail(err)
	}
	mux := http.NewServeMux()
	mux.Handle(webhook.InjectPath, answer)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	// The TLS settings of `injector serve` (webhook.Serve).
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fail(err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fail(err)
	}
	return 0
}
