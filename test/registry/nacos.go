package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NacosInstance is one registered instance.
type NacosInstance struct {
	Namespace, Group, Service, Cluster, IP string
	Port                                   int
	Weight                                 float64
	Enabled                                bool
	Ephemeral                              bool
	Metadata                               map[string]string
}

// Key is the instance's identity in the stand-in.
func (i NacosInstance) Key() string {
	return fmt.Sprintf("%s|%s@@%s|%s|%s:%d", orPublic(i.Namespace), i.Group, i.Service, i.Cluster, i.IP, i.Port)
}

func orPublic(ns string) string {
	if ns == "" {
		return "public"
	}
	return ns
}

// nacosOverride is 2.x/3.x's metadata override layer, keyed by service and
// ip:port:cluster: it is written whether or not such an instance exists,
// survives the instance's deregistration for 60s, and applies again when
// an instance registers at the same key within that time.
type nacosOverride struct {
	enabled   bool
	weight    float64
	expiresAt time.Time // zero while an instance holds it
}

// Nacos is a stand-in for a Nacos server of Version (1.x, 2.x or 3.x).
//
// What it reproduces (docs/lifecycle-hooks.md, "nacos", cites the source):
//   - 1.x: v1 PUT from a User-Agent other than Nacos-Java-Client takes the
//     register path (replaces the instance, wipes metadata, creates a
//     phantom for a wrong cluster); from the Java client, 400 "instance
//     not exist" for an unknown one. PATCH (1.2+) updates, 400 "instance
//     not found" for an unknown one. The catalog lists disabled instances;
//     re-registration resets enabled.
//   - 2.x: v1/v2 PUT answers "ok" for any ip/port/cluster once the service
//     exists and writes an override; PATCH answers 404 "no matched ip
//     found!" for an unknown instance and starts a new override at weight
//     1.0 unless weight is sent; the override survives re-registration
//     within 60s.
//   - 3.x: v1 admin APIs (PUT, PATCH, GET detail, catalog) answer 410; the
//     v3 admin API needs credentials by default (admin auth).
//   - Auth (1.x/2.x when Auth; 3.x admin API always unless AdminAuthOff):
//     login for an accessToken, 403 without one.
type Nacos struct {
	*Standin
	Version      string
	Auth         bool
	AdminAuthOff bool
	// Users are the accounts login accepts.
	Users map[string]string
	// Now is the stand-in's clock (for the 60s override expiry).
	Now func() time.Time

	mu        sync.Mutex
	instances map[string]*NacosInstance
	overrides map[string]*nacosOverride
	tokens    map[string]string
}

// NewNacos returns a stand-in for Nacos version (such as "2.5.1").
func NewNacos(version string) *Nacos {
	return &Nacos{Standin: newStandin("nacos " + version), Version: version, Users: map[string]string{"nacos": "nacos"},
		Now: time.Now, instances: map[string]*NacosInstance{}, overrides: map[string]*nacosOverride{}, tokens: map[string]string{}}
}

func (n *Nacos) major() int {
	m, _ := strconv.Atoi(strings.SplitN(n.Version, ".", 2)[0])
	return m
}

func (n *Nacos) minor() int {
	parts := strings.SplitN(n.Version, ".", 3)
	if len(parts) < 2 {
		return 0
	}
	m, _ := strconv.Atoi(parts[1])
	return m
}

func overrideKey(i NacosInstance) string {
	return fmt.Sprintf("%s|%s@@%s|%s:%d:%s", orPublic(i.Namespace), i.Group, i.Service, i.IP, i.Port, i.Cluster)
}

// Register adds or replaces an instance, as the app's client does at start.
// On 2.x/3.x an override at the same key applies again (and is no longer
// due to expire); on 1.x registration replaces everything.
func (n *Nacos) Register(i NacosInstance) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if i.Group == "" {
		i.Group = "DEFAULT_GROUP"
	}
	if i.Cluster == "" {
		i.Cluster = "DEFAULT"
	}
	if i.Weight == 0 {
		i.Weight = 1
	}
	i.Enabled = true
	n.instances[i.Key()] = &i
	if o, ok := n.overrides[overrideKey(i)]; ok && n.major() >= 2 && n.live(o) {
		o.expiresAt = time.Time{}
	}
}

// Deregister removes an instance, as a stopping client or a lost
// connection does; a 2.x/3.x override then expires 60s later
// (nacos.naming.clean.expired-metadata.expired-time).
func (n *Nacos) Deregister(i NacosInstance) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i = n.normalise(i)
	delete(n.instances, i.Key())
	if o, ok := n.overrides[overrideKey(i)]; ok {
		o.expiresAt = n.Now().Add(60 * time.Second)
	}
}

func (n *Nacos) normalise(i NacosInstance) NacosInstance {
	if i.Group == "" {
		i.Group = "DEFAULT_GROUP"
	}
	if i.Cluster == "" {
		i.Cluster = "DEFAULT"
	}
	return i
}

func (n *Nacos) live(o *nacosOverride) bool {
	return o.expiresAt.IsZero() || n.Now().Before(o.expiresAt)
}

// Instance returns an instance as consumers see it (the override
// applied), and whether it is registered.
func (n *Nacos) Instance(i NacosInstance) (NacosInstance, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i = n.normalise(i)
	got, ok := n.instances[i.Key()]
	if !ok {
		return NacosInstance{}, false
	}
	return n.effective(*got), true
}

// Instances lists every registered instance as consumers see it.
func (n *Nacos) Instances() []NacosInstance {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []NacosInstance
	for _, i := range n.instances {
		out = append(out, n.effective(*i))
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key() < out[b].Key() })
	return out
}

func (n *Nacos) effective(i NacosInstance) NacosInstance {
	if o, ok := n.overrides[overrideKey(i)]; ok && n.major() >= 2 && n.live(o) {
		i.Enabled, i.Weight = o.enabled, o.weight
	}
	return i
}

func (n *Nacos) ServeHTTP(w http.ResponseWriter, r *http.Request) { n.serve(w, r, n.answer) }

// key reads the instance key from the request's parameters.
func (n *Nacos) key(r *http.Request, clusterParam string) NacosInstance {
	port, _ := strconv.Atoi(form(r, "port"))
	cluster := form(r, clusterParam)
	if cluster == "" && clusterParam == "clusterName" {
		cluster = form(r, "cluster")
	}
	group := form(r, "groupName")
	service := form(r, "serviceName")
	if g, s, ok := strings.Cut(service, "@@"); ok {
		group, service = g, s
	}
	return n.normalise(NacosInstance{Namespace: form(r, "namespaceId"), Group: group, Service: service, Cluster: cluster, IP: form(r, "ip"), Port: port})
}

func (n *Nacos) serviceExists(i NacosInstance) bool {
	for _, got := range n.instances {
		if orPublic(got.Namespace) == orPublic(i.Namespace) && got.Group == i.Group && got.Service == i.Service {
			return true
		}
	}
	return false
}

// authorised checks the request's identity when the API needs one.
func (n *Nacos) authorised(w http.ResponseWriter, r *http.Request, admin bool) bool {
	need := n.Auth || (admin && n.major() >= 3 && !n.AdminAuthOff)
	if !need {
		return true
	}
	tok := form(r, "accessToken")
	if tok == "" {
		tok = r.Header.Get("accessToken")
	}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && tok == "" {
		tok = b
	}
	if _, ok := n.tokens[tok]; ok && tok != "" {
		return true
	}
	msg := "user not found!"
	if tok != "" {
		msg = "token invalid!"
	}
	if n.major() >= 3 {
		msg = "Code: 401, Message: " + msg + "."
	}
	springError(w, r, http.StatusForbidden, msg)
	return false
}

func (n *Nacos) gone(w http.ResponseWriter, r *http.Request, instead string) {
	springError(w, r, http.StatusGone, fmt.Sprintf(`{"code":40000,"message":"Current API will be deprecated, please use API(s) %s instead, or set nacos.core.api.compatibility.admin.enabled=true in application.properties.","data":null}`, instead))
}

func (n *Nacos) answer(w http.ResponseWriter, r *http.Request, ignore bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := r.URL.Path
	v3 := n.major() >= 3
	switch {
	case p == "/nacos/v3/admin/core/state" && r.Method == http.MethodGet:
		if !v3 {
			springError(w, r, http.StatusNotFound, "No static resource v3/admin/core/state.")
			return
		}
		jsonAnswer(w, 200, fmt.Sprintf(`{"code":0,"message":"success","data":{"version":%q,"standalone_mode":"standalone","function_mode":null}}`, n.Version))
	case p == "/nacos/v1/console/server/state" && r.Method == http.MethodGet:
		jsonAnswer(w, 200, fmt.Sprintf(`{"version":%q,"standalone_mode":"standalone","function_mode":null,"auth_enabled":"%t","login_page_enabled":"%t"}`, n.Version, n.Auth, n.Auth))
	case (p == "/nacos/v1/auth/login" || p == "/nacos/v1/auth/users/login" || (v3 && p == "/nacos/v3/auth/user/login")) && r.Method == http.MethodPost:
		user, pw := form(r, "username"), form(r, "password")
		if want, ok := n.Users[user]; !ok || want != pw || pw == "" {
			msg := "user not found!"
			if n.major() == 1 {
				msg = "unknown user!"
			}
			springError(w, r, http.StatusForbidden, msg)
			return
		}
		tok := fmt.Sprintf("standin-token-%d", len(n.tokens)+1)
		n.tokens[tok] = user
		w.Header().Set("Authorization", "Bearer "+tok)
		jsonAnswer(w, 200, fmt.Sprintf(`{"accessToken":%q,"tokenTtl":18000,"globalAdmin":false,"username":%q}`, tok, user))
	case p == "/nacos/v1/ns/instance" && r.Method == http.MethodPut:
		if v3 {
			n.gone(w, r, "`PUT /nacos/v3/admin/ns/instance`")
			return
		}
		if !n.authorised(w, r, false) {
			return
		}
		n.putV1(w, r, ignore)
	case p == "/nacos/v1/ns/instance" && r.Method == http.MethodPatch:
		switch {
		case v3:
			n.gone(w, r, "`PUT /nacos/v3/admin/ns/instance/partial`")
			return
		case n.major() == 1 && n.minor() < 2:
			springError(w, r, http.StatusMethodNotAllowed, "Request method 'PATCH' not supported")
			return
		}
		if !n.authorised(w, r, false) {
			return
		}
		key := n.key(r, "clusterName")
		got, ok := n.instances[key.Key()]
		if !ok {
			if n.major() == 1 {
				text(w, 400, "caused: instance not found;")
				return
			}
			text(w, 404, "caused: no matched ip found!;")
			return
		}
		if ignore {
			text(w, 200, "ok")
			return
		}
		n.patch(*got, r, false)
		text(w, 200, "ok")
	case p == "/nacos/v1/ns/catalog/instances" && r.Method == http.MethodGet:
		if v3 {
			n.gone(w, r, "`GET /nacos/v3/admin/ns/instance/list`")
			return
		}
		if !n.authorised(w, r, false) {
			return
		}
		key := n.key(r, "clusterName")
		if !n.serviceExists(key) {
			text(w, 404, fmt.Sprintf("caused: service %s@@%s is not found!;", key.Group, key.Service))
			return
		}
		var list []map[string]any
		for _, i := range n.sorted() {
			if orPublic(i.Namespace) == orPublic(key.Namespace) && i.Group == key.Group && i.Service == key.Service && i.Cluster == key.Cluster {
				list = append(list, instanceJSON(n.effective(*i)))
			}
		}
		b, _ := json.Marshal(map[string]any{"list": list, "count": len(list)})
		jsonAnswer(w, 200, string(b))
	case v3 && p == "/nacos/v3/admin/ns/instance" && r.Method == http.MethodGet:
		if !n.authorised(w, r, true) {
			return
		}
		got, ok := n.instances[n.key(r, "clusterName").Key()]
		if !ok {
			jsonAnswer(w, 404, `{"code":20004,"message":"resource not found","data":"no matched ip found!"}`)
			return
		}
		b, _ := json.Marshal(map[string]any{"code": 0, "message": "success", "data": instanceJSON(n.effective(*got))})
		jsonAnswer(w, 200, string(b))
	case v3 && p == "/nacos/v3/admin/ns/instance/partial" && r.Method == http.MethodPut:
		if !n.authorised(w, r, true) {
			return
		}
		got, ok := n.instances[n.key(r, "clusterName").Key()]
		if !ok {
			jsonAnswer(w, 404, `{"code":20004,"message":"resource not found","data":"no matched ip found!"}`)
			return
		}
		if !ignore {
			// validate() fills weight=1.0 and enabled=true before the patch.
			n.patch(*got, r, true)
		}
		jsonAnswer(w, 200, `{"code":0,"message":"success","data":"ok"}`)
	case v3 && p == "/nacos/v3/admin/ns/instance" && r.Method == http.MethodPut:
		if !n.authorised(w, r, true) {
			return
		}
		n.putV2(w, r, ignore, true)
	default:
		springError(w, r, http.StatusNotFound, "No static resource "+strings.TrimPrefix(p, "/nacos/")+".")
	}
}

func (n *Nacos) sorted() []*NacosInstance {
	var out []*NacosInstance
	for _, i := range n.instances {
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key() < out[b].Key() })
	return out
}

func instanceJSON(i NacosInstance) map[string]any {
	md := i.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return map[string]any{"ip": i.IP, "port": i.Port, "weight": i.Weight, "enabled": i.Enabled, "healthy": true,
		"ephemeral": !false, "clusterName": i.Cluster, "serviceName": i.Group + "@@" + i.Service, "metadata": md,
		"instanceId": fmt.Sprintf("%s#%d#%s#%s@@%s", i.IP, i.Port, i.Cluster, i.Group, i.Service)}
}

// patch changes enabled and weight as the generation does: 1.x mutates
// the instance; 2.x/3.x write the override, starting from the defaults
// (weight 1.0, enabled true) when there is none.
func (n *Nacos) patch(got NacosInstance, r *http.Request, fill bool) {
	enabled, weight := form(r, "enabled"), form(r, "weight")
	if n.major() == 1 {
		i := n.instances[got.Key()]
		if enabled != "" {
			i.Enabled = enabled == "true"
		}
		if w, err := strconv.ParseFloat(weight, 64); err == nil {
			i.Weight = w
		}
		return
	}
	key := overrideKey(got)
	o, ok := n.overrides[key]
	if !ok || !n.live(o) {
		o = &nacosOverride{enabled: true, weight: 1.0}
		n.overrides[key] = o
	}
	if fill && enabled == "" {
		enabled = "true"
	}
	if fill && weight == "" {
		weight = "1.0"
	}
	if enabled != "" {
		o.enabled = enabled == "true"
	}
	if w, err := strconv.ParseFloat(weight, 64); err == nil {
		o.weight = w
	}
}

// putV1 is the v1 update of each generation.
func (n *Nacos) putV1(w http.ResponseWriter, r *http.Request, ignore bool) {
	key := n.key(r, "clusterName")
	if key.IP == "" || key.Port == 0 || key.Service == "" {
		text(w, 400, "caused: Param 'ip' is required.;")
		return
	}
	if n.major() >= 2 {
		n.putV2(w, r, ignore, false)
		return
	}
	enabled := form(r, "enabled") != "false"
	weight, err := strconv.ParseFloat(form(r, "weight"), 64)
	if err != nil {
		weight = 1
	}
	replacement := key
	replacement.Enabled, replacement.Weight = enabled, weight // metadata: only what was sent (none)
	if strings.HasPrefix(r.UserAgent(), "Nacos-Java-Client") {
		// updateInstance: ip, port and ephemeral must match (the cluster
		// is not compared).
		found := false
		for _, i := range n.instances {
			if i.IP == key.IP && i.Port == key.Port && i.Service == key.Service && i.Group == key.Group {
				found = true
			}
		}
		if !found {
			text(w, 400, fmt.Sprintf("caused: instance not exist: {\"ip\":%q,\"port\":%d};", key.IP, key.Port))
			return
		}
	}
	if !ignore {
		// registerInstance or updateInstance: the whole instance is
		// replaced at ip:port:cluster; a wrong cluster is a phantom.
		n.instances[replacement.Key()] = &replacement
	}
	text(w, 200, "ok")
}

// putV2 is 2.x/3.x's update: an override for ip:port:cluster, written
// whether or not such an instance exists, once the service does.
func (n *Nacos) putV2(w http.ResponseWriter, r *http.Request, ignore, v3 bool) {
	key := n.key(r, "clusterName")
	if !n.serviceExists(key) {
		msg := fmt.Sprintf("service not found, namespace: %s, service: %s@@%s", orPublic(key.Namespace), key.Group, key.Service)
		if v3 {
			jsonAnswer(w, 400, fmt.Sprintf(`{"code":21004,"message":"instance error","data":%q}`, msg))
			return
		}
		text(w, 400, "caused: "+msg+";")
		return
	}
	if !ignore {
		weight, err := strconv.ParseFloat(form(r, "weight"), 64)
		if err != nil {
			weight = 1
		}
		n.overrides[overrideKey(key)] = &nacosOverride{enabled: form(r, "enabled") != "false", weight: weight}
	}
	if v3 {
		jsonAnswer(w, 200, `{"code":0,"message":"success","data":"ok"}`)
		return
	}
	text(w, 200, "ok")
}
