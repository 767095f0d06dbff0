package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Client calls the app at a steady rate: one request every Interval,
// started on schedule whether or not earlier ones have finished (an open
// loop, as independent consumers are), each on a new connection to the
// next address of the Discovery's current view (round robin).
type Client struct {
	Discovery Discovery
	// Interval between requests (20ms: 50 requests a second).
	Interval time.Duration
	// Timeout bounds one request; a request that takes longer failed.
	Timeout time.Duration
	// Path is requested on each instance ("/whoami").
	Path string
}

// Request is one request the client sent.
type Request struct {
	At     time.Time
	Target netip.AddrPort
	// Err is "" for a 200, otherwise what went wrong (see errorKind).
	Err string
}

// Recording is a running client's requests and views.
type Recording struct {
	mu       sync.Mutex
	requests []Request
	views    []View
	ready    chan struct{}
	once     sync.Once
	stop     context.CancelFunc
	wg       sync.WaitGroup
	runErr   error
}

// View is the discovery's view from At on.
type View struct {
	At    time.Time
	Addrs []netip.AddrPort
}

// Start starts the client; it runs until Stop.
func (c *Client) Start(ctx context.Context) *Recording {
	ctx, cancel := context.WithCancel(ctx)
	rec := &Recording{ready: make(chan struct{}), stop: cancel}
	var current atomic.Pointer[[]netip.AddrPort]
	empty := []netip.AddrPort{}
	current.Store(&empty)
	rec.wg.Add(1)
	go func() {
		defer rec.wg.Done()
		err := c.Discovery.Run(ctx, func(v []netip.AddrPort) {
			current.Store(&v)
			rec.mu.Lock()
			rec.views = append(rec.views, View{time.Now(), v})
			rec.mu.Unlock()
			rec.once.Do(func() { close(rec.ready) })
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			rec.mu.Lock()
			rec.runErr = err
			rec.mu.Unlock()
		}
	}()
	hc := &http.Client{Timeout: c.Timeout, Transport: &http.Transport{
		DisableKeepAlives: true, Proxy: nil,
		DialContext: (&net.Dialer{Timeout: c.Timeout}).DialContext,
	}}
	rec.wg.Add(1)
	go func() {
		defer rec.wg.Done()
		select {
		case <-rec.ready:
		case <-ctx.Done():
			return
		}
		tick := time.NewTicker(c.Interval)
		defer tick.Stop()
		var next uint64
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			view := *current.Load()
			r := Request{At: time.Now()}
			if len(view) == 0 {
				r.Err = "no instance known"
				rec.add(r)
				continue
			}
			r.Target = view[next%uint64(len(view))]
			next++
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				// Not the run's context: a request in flight when the
				// client stops still counts.
				r.Err = c.do(hc, r.Target)
				rec.add(r)
			}()
		}
	}()
	return rec
}

func (c *Client) do(hc *http.Client, target netip.AddrPort) string {
	resp, err := hc.Get("http://" + target.String() + c.Path)
	if err != nil {
		return errorKind(err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	if err != nil {
		return errorKind(err)
	}
	return ""
}

// errorKind names a failed request's cause for reports.
func errorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "server closed idle connection"):
		// net/http's words for a server that closed the new connection
		// before answering (a shutting-down server closes connections
		// that have not sent their request yet).
		return "connection closed before the answer"
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout"):
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	}
	return err.Error()
}

func (rec *Recording) add(r Request) {
	rec.mu.Lock()
	rec.requests = append(rec.requests, r)
	rec.mu.Unlock()
}

// Ready is closed once the discovery delivered its first view.
func (rec *Recording) Ready() <-chan struct{} { return rec.ready }

// Views returns the views so far.
func (rec *Recording) Views() []View {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]View(nil), rec.views...)
}

// Stop stops the client, waits for the requests in flight and returns
// every request, in the order they were sent, and the discovery's error.
func (rec *Recording) Stop() ([]Request, error) {
	rec.stop()
	rec.wg.Wait()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	sort.Slice(rec.requests, func(i, j int) bool { return rec.requests[i].At.Before(rec.requests[j].At) })
	return rec.requests, rec.runErr
}
