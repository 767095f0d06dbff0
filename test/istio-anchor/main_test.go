package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/sidecar-injector/injector/test/istio-anchor/anchor/anchortest"
)

// TestServeOverTLS starts the server as the binary does (port 0, a
// generated pair, --ca-out, --ready, --webhook-config), POSTs the bench
// review over TLS trusting only the written CA, and checks Istio's answer.
func TestServeOverTLS(t *testing.T) {
	dir := t.TempDir()
	ready, ca, mwc := filepath.Join(dir, "ready"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "mwc.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--cert-dir", filepath.Join(dir, "certs"), "--ca-out", ca,
			"--ready", ready, "--webhook-config", mwc, "--log-target", os.DevNull})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var addr string
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			addr = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("exited before ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready in 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA written")
	}
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if _, err := os.Stat(filepath.Join(dir, "certs", name)); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(mwc); err != nil || !bytes.Contains(b, []byte("https://"+addr+"/inject")) {
		t.Fatalf("webhook configuration not pointed at %s: %v\n%s", addr, err, b)
	}
	review := anchortest.BenchReview(t, "../..")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	if r, err := cl.Get("https://" + addr + "/healthz"); err != nil || r.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", r, err)
	}
	resp, err := cl.Post("https://"+addr+"/inject", "application/json", bytes.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("status %d over %s: %s", resp.StatusCode, resp.Proto, answer)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(answer, &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 || out.Response.UID != "0df28fbd-5f5f-11e8-bc74-36e6bb280816" {
		t.Fatalf("not an injection: %s", answer)
	}
	for _, want := range []string{`"name":"istio-proxy"`, `"name":"istio-init"`, `"restartPolicy":"Always"`, `docker.io/istio/proxyv2:1.31-dev`} {
		if !bytes.Contains(out.Response.Patch, []byte(want)) {
			t.Errorf("the patch lacks %s", want)
		}
	}
	inj := anchortest.Inspect(t, review, answer)
	if anchortest.Find(inj.Injected.Spec.InitContainers, "istio-proxy") == nil {
		t.Errorf("istio-proxy is not a native sidecar: init %v, containers %v", inj.InitNames, inj.ContainerNames)
	}
	t.Logf("%s: answer %d bytes, patch %d bytes in %d operations, pod %d -> %d bytes; init %v, containers %v",
		resp.Proto, len(answer), len(out.Response.Patch), inj.PatchOps, inj.PodBytes, inj.InjectedPodBytes, inj.InitNames, inj.ContainerNames)
}
