package rollout

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// Discovery is how the client finds the app's instances: it reports each
// new view (the addresses a consumer would send requests to) until ctx
// ends. Implementations say exactly what consumer they emulate.
type Discovery interface {
	// Name describes the consumer emulated, for reports.
	Name() string
	// Run calls update with every new view, the first as soon as it is
	// known, until ctx ends. It returns ctx's error, or the error that
	// stopped it.
	Run(ctx context.Context, update func([]netip.AddrPort)) error
}

// EndpointSlices emulates a Service's consumers behind kube-proxy: the view
// is the Service's ready endpoints from its EndpointSlices (read through the
// API server with a watch, as kube-proxy reads them), applied Delay after
// the API server published the change.
//
// What is emulated, exactly: kube-proxy's choice of endpoints (Ready, or,
// when no endpoint of the Service is ready, the Serving and Terminating
// ones: kube-proxy's fallback for terminating endpoints) and the time it
// takes for a change to reach the node's forwarding rules (its watch and
// its sync, --iptables-min-sync-period 1s by default), as one fixed Delay.
// What is not: no kube-proxy, no ClusterIP and no iptables rules are
// involved; the client connects to the chosen endpoint itself, one new
// connection per request, round robin (kube-proxy picks at random per
// connection).
type EndpointSlices struct {
	Client    kubernetes.Interface
	Namespace string
	Service   string
	// Port is the endpoints' port the client calls (the Service's
	// targetPort).
	Port uint16
	// IPv6 selects the IPv6 slices; IPv4 otherwise.
	IPv6 bool
	// Delay is the propagation delay emulated (kube-proxy: about 1s).
	Delay time.Duration
}

// Name implements Discovery.
func (e *EndpointSlices) Name() string {
	return fmt.Sprintf("Service %s/%s: ready endpoints from its EndpointSlices, %s after the API server (kube-proxy emulated)", e.Namespace, e.Service, e.Delay)
}

// Run implements Discovery.
func (e *EndpointSlices) Run(ctx context.Context, update func([]netip.AddrPort)) error {
	d := newDelayed(e.Delay, update)
	defer d.stop()
	sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + e.Service}
	slices := e.Client.DiscoveryV1().EndpointSlices(e.Namespace)
	family := discoveryv1.AddressTypeIPv4
	if e.IPv6 {
		family = discoveryv1.AddressTypeIPv6
	}
	for ctx.Err() == nil {
		list, err := slices.List(ctx, sel)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("listing the EndpointSlices of %s/%s: %w", e.Namespace, e.Service, err)
		}
		state := map[string]*discoveryv1.EndpointSlice{}
		for i := range list.Items {
			state[list.Items[i].Name] = &list.Items[i]
		}
		d.push(endpointsView(state, family, e.Port))
		opts := sel
		opts.ResourceVersion = list.ResourceVersion
		w, err := slices.Watch(ctx, opts)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("watching the EndpointSlices of %s/%s: %w", e.Namespace, e.Service, err)
		}
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				break // watch error (expired): list again
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				state[s.Name] = s
			case watch.Deleted:
				delete(state, s.Name)
			}
			d.push(endpointsView(state, family, e.Port))
		}
		w.Stop()
	}
	return ctx.Err()
}

// endpointsView is kube-proxy's choice: the ready endpoints, or when none
// is ready the serving terminating ones.
func endpointsView(state map[string]*discoveryv1.EndpointSlice, family discoveryv1.AddressType, port uint16) []netip.AddrPort {
	var ready, terminating []netip.AddrPort
	for _, s := range state {
		if s.AddressType != family {
			continue
		}
		for _, ep := range s.Endpoints {
			c := ep.Conditions
			isReady := c.Ready == nil || *c.Ready
			serving := c.Serving == nil || *c.Serving
			isTerminating := c.Terminating != nil && *c.Terminating
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				switch {
				case isReady:
					ready = append(ready, netip.AddrPortFrom(ip, port))
				case serving && isTerminating:
					terminating = append(terminating, netip.AddrPortFrom(ip, port))
				}
			}
		}
	}
	if len(ready) == 0 {
		ready = terminating
	}
	return sorted(ready)
}

func sorted(a []netip.AddrPort) []netip.AddrPort {
	sort.Slice(a, func(i, j int) bool { return a[i].Compare(a[j]) < 0 })
	return a
}

// delayed applies views Delay after they were pushed, in order.
type delayed struct {
	delay  time.Duration
	update func([]netip.AddrPort)
	mu     sync.Mutex
	queue  []pending
	wake   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
}

type pending struct {
	at   time.Time
	view []netip.AddrPort
}

func newDelayed(delay time.Duration, update func([]netip.AddrPort)) *delayed {
	d := &delayed{delay: delay, update: update, wake: make(chan struct{}, 1), done: make(chan struct{})}
	d.wg.Add(1)
	go d.loop()
	return d
}

func (d *delayed) push(view []netip.AddrPort) {
	d.mu.Lock()
	d.queue = append(d.queue, pending{time.Now().Add(d.delay), view})
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *delayed) loop() {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		var next *pending
		if len(d.queue) > 0 {
			next = &d.queue[0]
		}
		d.mu.Unlock()
		if next == nil {
			select {
			case <-d.wake:
				continue
			case <-d.done:
				return
			}
		}
		if wait := time.Until(next.at); wait > 0 {
			select {
			case <-time.After(wait):
			case <-d.done:
				return
			}
		}
		d.mu.Lock()
		p := d.queue[0]
		d.queue = d.queue[1:]
		d.mu.Unlock()
		d.update(p.view)
	}
}

func (d *delayed) stop() {
	close(d.done)
	d.wg.Wait()
}
