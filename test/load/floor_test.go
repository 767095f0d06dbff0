package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"

	"github.com/sidecar-injector/injector/webhook"
)

// TestMain lets --spawn --floor run this test binary as the floor server,
// as the built tool runs itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == floorCommand {
		os.Exit(floorMain(os.Args[2:], os.Stderr))
	}
	spawnDeadline = deadline
	os.Exit(m.Run())
}

// TestFloorAnswersAsTheInjector: for every uid the floor server's answer
// is byte for byte the injector's answer to the same request, so the two
// put the same bytes on the wire.
func TestFloorAnswersAsTheInjector(t *testing.T) {
	floor, err := newFloorAnswer(defaultReview, "shop")
	if err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	real := realHandler(t, &received)
	rv, err := newReview(defaultReview)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(h http.Handler, uid *[uidLen]byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, webhook.InjectPath, rv.body(uid))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for range 3 {
		uid := rv.nextUID()
		got, want := serve(floor, &uid), serve(real, &uid)
		if got.Code != http.StatusOK || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Fatalf("uid %s: the floor answered %d\n%s\nthe injector\n%s", uid, got.Code, got.Body.Bytes(), want.Body.Bytes())
		}
		if kind, detail := verify(got.Body.Bytes(), string(uid[:])); kind != "" {
			t.Fatalf("%s: %s", kind, detail)
		}
	}
	// Anything but the load tool's review is refused, never answered with
	// a patch meant for another object.
	req := httptest.NewRequest(http.MethodPost, webhook.InjectPath, bytes.NewReader([]byte(`{}`)))
	rec := httptest.NewRecorder()
	floor.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a foreign body got %d: %s", rec.Code, rec.Body.Bytes())
	}
	if _, err := newFloorAnswer([]byte(`{"request":{"uid":"short"}}`), "shop"); err == nil {
		t.Error("a review whose uid is not 36 bytes was accepted")
	}
}

// TestSpawnFloor runs the one-command floor measurement: the tool starts
// itself as the floor server, loads it, verifies every answer and stops it.
func TestSpawnFloor(t *testing.T) {
	var out, errb bytes.Buffer
	code := mainWithArgs([]string{"--spawn", "--floor", "--proto", "h1", "--json", "--rate", "100", "--duration", "1s", "--warmup", "200ms", "--timeout", deadline.String()}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Requests != 100 || rep.OK != 100 || rep.ErrorsTotal != 0 || rep.Protocol != "HTTP/1.1" {
		t.Errorf("%d sent, %d ok over %s, errors %v %v", rep.Requests, rep.OK, rep.Protocol, rep.Errors, rep.ErrorSamples)
	}
	if len(rep.Config.ServerArgs) == 0 || rep.Config.ServerArgs[0] != floorCommand {
		t.Errorf("spawned %q %q, not the floor server", rep.Config.Spawned, rep.Config.ServerArgs)
	}
	if s := rep.Server; s == nil || s.PID <= 0 {
		t.Errorf("server: %+v", s)
	} else if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.PID)); err == nil {
		t.Errorf("the floor server (pid %d) still runs", s.PID)
	}
}
