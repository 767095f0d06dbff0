package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// eurekaStatuses are Eureka's InstanceStatus names.
var eurekaStatuses = map[string]bool{"UP": true, "DOWN": true, "STARTING": true, "OUT_OF_SERVICE": true, "UNKNOWN": true}

type eurekaInstance struct {
	status, overridden string
	// lastDirty is the client's lastDirtyTimestamp (the app's clock),
	// registered the server's registrationTimestamp (the peer's clock).
	lastDirty, registered time.Time
}

// EurekaCluster is a stand-in for a cluster of Eureka server peers
// (Netflix eureka-core's InstanceResource). A client registers with one
// peer; the others learn the instance by replication, which the stand-in
// holds back until Replicate, so a peer can answer 404 for an instance
// another peer knows. Each peer keeps its own status override map
// (overriddenInstanceStatusMap): a status change or override removal on
// one peer replicates to the peers that know the instance, unless
// replication to them is cut (Isolate); a registration takes the override
// from the receiving peer's own map, so a peer that missed the removal
// brings OUT_OF_SERVICE back. A re-registration with the same id after
// the old process died without cancelling keeps the override (restart in
// place). Each instance shows its lastDirtyTimestamp (set by the client,
// on Now) and leaseInfo.registrationTimestamp.
type EurekaCluster struct {
	Peers []*EurekaPeer
	// Now is the clock registrations are stamped with (the app's).
	Now func() time.Time
	// NoTimestamps leaves lastDirtyTimestamp and leaseInfo out of the
	// instance, as a server that shows no registration time would.
	NoTimestamps bool

	mu       sync.Mutex
	isolated map[int]bool
}

// EurekaPeer is one server of the cluster, served under /eureka.
type EurekaPeer struct {
	*Standin
	cluster   *EurekaCluster
	index     int
	apps      map[string]*eurekaInstance // by APP/id
	overrides map[string]string          // by APP/id
}

// NewEurekaCluster returns n peers.
func NewEurekaCluster(n int) *EurekaCluster {
	c := &EurekaCluster{Now: time.Now, isolated: map[int]bool{}}
	for i := 0; i < n; i++ {
		c.Peers = append(c.Peers, &EurekaPeer{Standin: newStandin(fmt.Sprintf("eureka peer %d", i)), cluster: c, index: i,
			apps: map[string]*eurekaInstance{}, overrides: map[string]string{}})
	}
	return c
}

func eurekaKey(app, id string) string { return strings.ToUpper(app) + "/" + id }

// Isolate cuts replication to peer (status changes made on other peers no
// longer reach it), or restores it.
func (c *EurekaCluster) Isolate(peer int, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.isolated[peer] = cut
}

// Register registers an instance with peer (index) only, as a client's
// registration does; Replicate spreads it. The peer's remembered override
// applies ("Storing overridden status from map").
func (c *EurekaCluster) Register(peer int, app, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.Now()
	c.Peers[peer].register(eurekaKey(app, id), now, now)
}

func (p *EurekaPeer) register(k string, lastDirty, at time.Time) {
	inst := &eurekaInstance{status: "UP", lastDirty: lastDirty, registered: at}
	if o, ok := p.overrides[k]; ok {
		inst.status, inst.overridden = o, o
	}
	p.apps[k] = inst
}

// Replicate gives every peer the registrations it lacks or holds an older
// one of (each peer registers it with its own override map).
func (c *EurekaCluster) Replicate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.Now()
	for _, p := range c.Peers {
		for k, inst := range p.apps {
			for _, q := range c.Peers {
				if got, ok := q.apps[k]; !ok || got.lastDirty.Before(inst.lastDirty) {
					q.register(k, inst.lastDirty, now)
				}
			}
		}
	}
}

// Cancel is a gracefully stopping client's DELETE /apps/{app}/{id}: the
// instance and its override go from every peer.
func (c *EurekaCluster) Cancel(app, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := eurekaKey(app, id)
	for _, p := range c.Peers {
		delete(p.apps, k)
		delete(p.overrides, k)
	}
}

// Status returns the instance's status and override on peer.
func (c *EurekaCluster) Status(peer int, app, id string) (status, overridden string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	inst, ok := c.Peers[peer].apps[eurekaKey(app, id)]
	if !ok {
		return "", "", false
	}
	return inst.status, inst.overridden, true
}

// Heartbeat is the client's renew: an instance left UNKNOWN by a DELETE of
// its override without a value is registered again as UP.
func (c *EurekaCluster) Heartbeat(app, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.Peers {
		if inst, ok := p.apps[eurekaKey(app, id)]; ok && inst.overridden == "" {
			inst.status = "UP"
		}
	}
}

func (p *EurekaPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.serve(w, r, p.answer) }

func (p *EurekaPeer) answer(w http.ResponseWriter, r *http.Request, ignore bool) {
	c := p.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, "/eureka/apps/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 2 {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	k := eurekaKey(parts[0], parts[1])
	inst, known := p.apps[k]
	status := len(parts) == 3 && parts[2] == "status"
	switch {
	case len(parts) == 2 && r.Method == http.MethodGet:
		if !known {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		// As EurekaJacksonCodec writes it: the instance's timestamps as
		// strings, the lease's as numbers.
		body := map[string]any{"instance": map[string]any{"instanceId": parts[1], "app": strings.ToUpper(parts[0]),
			"status": inst.status, "overriddenStatus": orUnknown(inst.overridden),
			"lastDirtyTimestamp": fmt.Sprint(inst.lastDirty.UnixMilli()), "lastUpdatedTimestamp": fmt.Sprint(inst.registered.UnixMilli()),
			"leaseInfo": map[string]any{"renewalIntervalInSecs": 30, "durationInSecs": 90, "registrationTimestamp": inst.registered.UnixMilli(),
				"lastRenewalTimestamp": inst.registered.UnixMilli(), "evictionTimestamp": 0, "serviceUpTimestamp": inst.registered.UnixMilli()}}}
		if c.NoTimestamps {
			in := body["instance"].(map[string]any)
			delete(in, "lastDirtyTimestamp")
			delete(in, "lastUpdatedTimestamp")
			delete(in, "leaseInfo")
		}
		if !strings.Contains(r.Header.Get("Accept"), "json") {
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprintf(w, "<instance><instanceId>%s</instanceId><status>%s</status><overriddenstatus>%s</overriddenstatus></instance>", parts[1], inst.status, orUnknown(inst.overridden))
			return
		}
		b, _ := json.Marshal(body)
		jsonAnswer(w, 200, string(b))
	case status && r.Method == http.MethodPut:
		v := r.URL.Query().Get("value")
		if !eurekaStatuses[v] {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if !known {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if !ignore {
			c.apply(p.index, k, func(q *EurekaPeer, i *eurekaInstance) { q.overrides[k] = v; i.status, i.overridden = v, v })
		}
		w.WriteHeader(http.StatusOK)
	case status && r.Method == http.MethodDelete:
		if !known {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		v := r.URL.Query().Get("value")
		if v == "" {
			v = "UNKNOWN" // until the client's next renew registers it again
		}
		if !ignore {
			c.apply(p.index, k, func(q *EurekaPeer, i *eurekaInstance) { delete(q.overrides, k); i.status, i.overridden = v, "" })
		}
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// apply changes the instance on peer from, and by replication on every
// other peer that knows it and is not cut off (a peer that does not know
// the instance answers the replicated change 404 and keeps its map).
func (c *EurekaCluster) apply(from int, k string, f func(*EurekaPeer, *eurekaInstance)) {
	for _, q := range c.Peers {
		if q.index != from && c.isolated[q.index] {
			continue
		}
		if inst, ok := q.apps[k]; ok {
			f(q, inst)
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "UNKNOWN"
	}
	return s
}
