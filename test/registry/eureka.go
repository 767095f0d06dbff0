package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// eurekaStatuses are Eureka's InstanceStatus names.
var eurekaStatuses = map[string]bool{"UP": true, "DOWN": true, "STARTING": true, "OUT_OF_SERVICE": true, "UNKNOWN": true}

type eurekaInstance struct {
	status, overridden string
}

// EurekaCluster is a stand-in for a cluster of Eureka server peers
// (Netflix eureka-core's InstanceResource). A client registers with one
// peer; the others learn the instance by replication, which the stand-in
// holds back until Replicate, so a peer can answer 404 for an instance
// another peer knows. Status changes replicate at once to the peers that
// know the instance. The override map survives a re-registration with the
// same id when the old process never cancelled (restart in place).
type EurekaCluster struct {
	Peers []*EurekaPeer

	mu sync.Mutex
	// overrides is the status override map (overriddenInstanceStatusMap),
	// by app and id; replication keeps it the same on every peer here.
	overrides map[string]string
}

// EurekaPeer is one server of the cluster, served under /eureka.
type EurekaPeer struct {
	*Standin
	cluster *EurekaCluster
	apps    map[string]*eurekaInstance // by APP/id
}

// NewEurekaCluster returns n peers.
func NewEurekaCluster(n int) *EurekaCluster {
	c := &EurekaCluster{overrides: map[string]string{}}
	for i := 0; i < n; i++ {
		c.Peers = append(c.Peers, &EurekaPeer{Standin: newStandin(fmt.Sprintf("eureka peer %d", i)), cluster: c, apps: map[string]*eurekaInstance{}})
	}
	return c
}

func eurekaKey(app, id string) string { return strings.ToUpper(app) + "/" + id }

// Register registers an instance with peer (index) only, as a client's
// first registration; Replicate spreads it. A remembered override applies.
func (c *EurekaCluster) Register(peer int, app, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := eurekaKey(app, id)
	inst := &eurekaInstance{status: "UP"}
	if o, ok := c.overrides[k]; ok {
		inst.status, inst.overridden = o, o
	}
	c.Peers[peer].apps[k] = inst
}

// Replicate gives every peer the instances any peer has.
func (c *EurekaCluster) Replicate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.Peers {
		for k, inst := range p.apps {
			for _, q := range c.Peers {
				if _, ok := q.apps[k]; !ok {
					cp := *inst
					q.apps[k] = &cp
				}
			}
		}
	}
}

// Cancel is a gracefully stopping client's DELETE /apps/{app}/{id}: the
// instance and its override go.
func (c *EurekaCluster) Cancel(app, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := eurekaKey(app, id)
	delete(c.overrides, k)
	for _, p := range c.Peers {
		delete(p.apps, k)
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
		body := map[string]any{"instance": map[string]any{"instanceId": parts[1], "app": strings.ToUpper(parts[0]),
			"status": inst.status, "overriddenStatus": orUnknown(inst.overridden)}}
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
			c.overrides[k] = v
			c.apply(k, func(i *eurekaInstance) { i.status, i.overridden = v, v })
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
			delete(c.overrides, k)
			c.apply(k, func(i *eurekaInstance) { i.status, i.overridden = v, "" })
		}
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// apply changes the instance on every peer that knows it (replication).
func (c *EurekaCluster) apply(k string, f func(*eurekaInstance)) {
	for _, q := range c.Peers {
		if inst, ok := q.apps[k]; ok {
			f(inst)
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "UNKNOWN"
	}
	return s
}
