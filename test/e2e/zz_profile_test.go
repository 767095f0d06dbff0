package e2e

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestZZProfileAPIServer(t *testing.T) {
	p := newPerfEnv(t)
	for _, mode := range []struct {
		name string
		on   bool
	}{{"injects", true}, {"none", false}} {
		p.setWebhook(t, mode.on)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				p.create(t, 20, 4, mode.on, false)
			}
		}()
		time.Sleep(time.Second)
		raw, err := p.cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "10").DoRaw(context.Background())
		cancel()
		<-done
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile("/tmp/apiserver-"+mode.name+".prof", raw, 0o644)
	}
}
