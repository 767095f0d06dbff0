package hook

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // Nacos's access-key signature is HmacSHA1
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// nacos disables the instance with the call each server generation takes
// safely (docs/lifecycle-hooks.md, "nacos"):
//
//   - 1.2 to 2.x: PATCH /v1/ns/instance with enabled=false and the current
//     weight. Never the v1 PUT: 1.x treats a PUT from any client but the
//     Java one as a re-registration (metadata wiped, a phantom for a wrong
//     key), and 2.x answers "ok" to a PUT for an instance that does not
//     exist and leaves the real one enabled.
//   - 3.x: PUT /v3/admin/ns/instance/partial (the v1 write APIs answer 410).
//
// Then it reads the instance back (1.x/2.x catalog, 3.x admin GET) and
// succeeds only when it shows enabled=false.
type nacos struct {
	servers                                    []string
	service, group, namespace, cluster, ip     string
	port                                       int
	user, password, accessKey, secretKey       string
	userFrom, accessKeyFrom                    string
	notesList                                  []string
	generation                                 int // 1, 2 or 3 once detected
	version, token                             string
	serverUsed                                 string
	namespaceShown                             string
	serviceFrom, clusterFrom, ipFrom, portFrom string
}

func (e environment) nacos(c meshinit.Nacos) (*nacos, error) {
	n := &nacos{}
	var notes []string
	servers, from := meshinit.SplitList(c.ServerURL), "--nacos-server-url"
	if len(servers) == 0 {
		var v string
		// Spring Cloud Alibaba's discovery address, else its shared one
		// (overrideFromEnv), else the container-image convention.
		v, from = e.prop("spring.cloud.nacos.discovery.server-addr", "spring.cloud.nacos.server-addr")
		if v == "" {
			v, from = e.lookup("NACOS_SERVER_ADDR")
		}
		servers = meshinit.SplitList(v)
	}
	if len(servers) == 0 {
		// What the app itself would use (NacosDiscoveryProperties).
		servers, from = []string{"127.0.0.1:8848"}, "Spring Cloud Alibaba's default; set --nacos-server-url or SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR"
	}
	for _, s := range servers {
		base, err := meshinit.NacosBaseURL(s)
		if err != nil {
			return nil, fmt.Errorf("nacos server from %s: %w", from, err)
		}
		n.servers = append(n.servers, base)
	}
	n.service, n.serviceFrom = c.ServiceName, "--nacos-service-name"
	if n.service == "" {
		n.service, n.serviceFrom = e.prop("spring.cloud.nacos.discovery.service", "spring.application.name")
	}
	if n.service == "" {
		return nil, errors.New("no Nacos service name: set --nacos-service-name (annotation sidecar-injector.io/nacos-service-name) or SPRING_APPLICATION_NAME in the app container")
	}
	var v, vf string
	v, vf = e.prop("spring.cloud.nacos.discovery.group")
	n.group, _ = orDefault(c.GroupName, "--nacos-group", v, vf)
	if n.group == "" {
		n.group = "DEFAULT_GROUP"
	}
	// The Nacos Java client's namespace (InitUtils.initNamespaceForNaming):
	// with cloud namespace parsing on (its default), ALIBABA_ALIWARE_NAMESPACE
	// wins over the configured namespace.
	n.namespace = c.NamespaceID
	nsFrom := "--nacos-namespace"
	if n.namespace == "" {
		n.namespace, nsFrom = e.lookup("ALIBABA_ALIWARE_NAMESPACE")
	}
	if n.namespace == "" {
		n.namespace, nsFrom = e.prop("spring.cloud.nacos.discovery.namespace")
	}
	n.namespaceShown = n.namespace
	if n.namespace == "" {
		n.namespaceShown, nsFrom = "public", "default"
	}
	n.cluster, n.clusterFrom = c.ClusterName, "--nacos-cluster"
	if n.cluster == "" {
		n.cluster, n.clusterFrom = e.prop("spring.cloud.nacos.discovery.cluster-name")
	}
	if n.cluster == "" {
		n.cluster, n.clusterFrom = "DEFAULT", "default"
	}
	n.ip, n.ipFrom = e.prop("spring.cloud.nacos.discovery.ip")
	if n.ip == "" {
		if ips := e.podIPs(); len(ips) > 0 {
			n.ip, n.ipFrom = ips[0], "pod address"
			if v := strings.TrimSpace(e.getenv("POD_IP")); v == n.ip {
				n.ipFrom = "POD_IP"
			}
		}
	}
	if n.ip == "" {
		return nil, errors.New("no instance IP: set POD_IP in the app container (downward API status.podIP)")
	}
	n.port, n.portFrom = int(c.Port), "--nacos-port"
	if n.port == 0 {
		n.port, n.portFrom = e.propPort(&notes, "spring.cloud.nacos.discovery.port", "server.port")
	}
	if n.port == 0 {
		n.port, n.portFrom = 8080, "default"
	}
	// Credentials: the variables the annotations name, else Spring Cloud
	// Alibaba's own (discovery first, then the shared ones).
	n.user, n.userFrom = e.named(c.UsernameEnv, "spring.cloud.nacos.discovery.username", "spring.cloud.nacos.username")
	n.password, _ = e.named(c.PasswordEnv, "spring.cloud.nacos.discovery.password", "spring.cloud.nacos.password")
	n.accessKey, n.accessKeyFrom = e.named(c.AccessKeyEnv, "spring.cloud.nacos.discovery.access-key", "spring.cloud.nacos.access-key")
	n.secretKey, _ = e.named(c.SecretKeyEnv, "spring.cloud.nacos.discovery.secret-key", "spring.cloud.nacos.secret-key")
	switch {
	case c.UsernameEnv != "" && n.user == "":
		notes = append(notes, fmt.Sprintf("%s (the user variable the pod names) is empty", c.UsernameEnv))
	case c.PasswordEnv != "" && n.password == "":
		notes = append(notes, fmt.Sprintf("%s (the password variable the pod names) is empty", c.PasswordEnv))
	}
	n.notesList = append(notes, fmt.Sprintf("server %s (%s), service %s (%s), group %s, namespace %s (%s), cluster %s (%s), ip %s (%s), port %d (%s)%s",
		meshinit.RedactURL(n.servers[0]), from, n.service, n.serviceFrom, n.group, n.namespaceShown, nsFrom, n.cluster, n.clusterFrom, n.ip, n.ipFrom, n.port, n.portFrom, n.authNote()))
	return n, nil
}

// named reads the variable the pod names, or else the properties.
func (e environment) named(variable string, properties ...string) (string, string) {
	if variable != "" {
		return strings.TrimSpace(e.getenv(variable)), variable
	}
	return e.prop(properties...)
}

func (n *nacos) authNote() string {
	switch {
	case n.user != "" && n.password != "":
		return fmt.Sprintf(", user %s (%s)", n.user, n.userFrom)
	case n.accessKey != "" && n.secretKey != "":
		return fmt.Sprintf(", access key (%s)", n.accessKeyFrom)
	}
	return ", no credentials"
}

func (n *nacos) notes() []string { return n.notesList }

func (n *nacos) key() string {
	return fmt.Sprintf("instance %s:%d of service %s@@%s, cluster %s, namespace %s", n.ip, n.port, n.group, n.service, n.cluster, n.namespaceShown)
}

// detect asks once which generation the server is: 3.x serves
// /v3/admin/core/state (open, no auth); 1.x and 2.x answer 404 there and
// serve /v1/console/server/state.
func (n *nacos) detect(s *step) error {
	if n.generation != 0 {
		return nil
	}
	var state struct {
		Data struct {
			Version string `json:"version"`
		} `json:"data"`
		Version     string `json:"version"`
		AuthEnabled string `json:"auth_enabled"`
	}
	r := s.do(call{method: http.MethodGet, bases: n.servers, path: "/v3/admin/core/state", header: jsonAccept,
		judge: func(a answer) verdict {
			if a.status == http.StatusNotFound {
				return accepted // a 1.x or 2.x server: asked below
			}
			return judgeStatus(a.status)
		}})
	if r.v != accepted {
		return fmt.Errorf("could not reach a Nacos server to learn its version: %s", s.last)
	}
	n.serverUsed = r.base
	if r.a.status == http.StatusOK {
		if err := decodeJSON(r.a, &state); err != nil || state.Data.Version == "" {
			return fmt.Errorf("%s answered /v3/admin/core/state without a version: %s", n.serverUsed, s.last)
		}
		n.version, n.generation = state.Data.Version, 3
		return nil
	}
	r = s.do(call{method: http.MethodGet, bases: []string{n.serverUsed}, path: "/v1/console/server/state", header: jsonAccept})
	if r.v != accepted {
		return fmt.Errorf("could not learn the Nacos version: %s", s.last)
	}
	if err := decodeJSON(r.a, &state); err != nil || state.Version == "" {
		return fmt.Errorf("/v1/console/server/state has no version: %s", s.last)
	}
	n.version = state.Version
	major, minor := versionParts(n.version)
	switch {
	case major >= 3:
		n.generation = 3
	case major == 2:
		n.generation = 2
	case major == 1 && minor >= 2:
		n.generation = 1
	default:
		// PATCH arrived in 1.2.0; the only write older servers have is the
		// PUT that re-registers (metadata wiped) from a non-Java client.
		return fmt.Errorf("Nacos %s has no PATCH /v1/ns/instance (added in 1.2.0), and its PUT would re-register the instance; upgrade Nacos or use the spring-cloud preset", n.version)
	}
	return nil
}

func versionParts(v string) (int, int) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major, minor
}

// login trades the user and password for an accessToken; without them
// nothing is sent, and a server that needs auth says so with 403.
func (n *nacos) login(s *step) error {
	if n.token != "" || n.user == "" || n.password == "" {
		return nil
	}
	paths := []string{"/v1/auth/login"}
	if n.generation == 3 {
		paths = []string{"/v3/auth/user/login", "/v1/auth/login"}
	}
	form := url.Values{"password": {n.password}}.Encode()
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"application/json"}}
	for _, p := range paths {
		// As the Nacos client sends it: username in the query, password in
		// the form body (so it stays out of access logs).
		r := s.do(call{method: http.MethodPost, bases: []string{n.serverUsed}, path: p + "?username=" + url.QueryEscape(n.user), header: hdr, body: form,
			judge: func(a answer) verdict {
				if a.status == http.StatusNotFound {
					return notHere
				}
				return judgeStatus(a.status)
			}})
		if r.v == notHere {
			continue
		}
		if r.v != accepted {
			return fmt.Errorf("login as %s failed: %s", n.user, s.last)
		}
		var tok struct {
			AccessToken string `json:"accessToken"`
		}
		if err := decodeJSON(r.a, &tok); err != nil || tok.AccessToken == "" {
			return fmt.Errorf("login as %s answered without an accessToken: %s", n.user, s.last)
		}
		n.token = tok.AccessToken
		return nil
	}
	return fmt.Errorf("no login endpoint: %s", s.last)
}

// query is the instance key as Nacos's parameters, with the credentials.
func (n *nacos) query(extra ...string) url.Values {
	q := url.Values{}
	q.Set("serviceName", n.service)
	q.Set("groupName", n.group)
	if n.namespace != "" {
		q.Set("namespaceId", n.namespace)
	}
	q.Set("clusterName", n.cluster)
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	if n.token != "" {
		q.Set("accessToken", n.token)
	}
	if n.accessKey != "" && n.secretKey != "" {
		// The Java client's signature (NamingProxy.injectSecurityInfo):
		// HmacSHA1 over "<millis>@@<group@@service>".
		data := strconv.FormatInt(time.Now().UnixMilli(), 10) + "@@" + n.group + "@@" + n.service
		mac := hmac.New(sha1.New, []byte(n.secretKey))
		mac.Write([]byte(data))
		q.Set("ak", n.accessKey)
		q.Set("data", data)
		q.Set("signature", base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return q
}

// nacosInstance is what the read-backs return about one instance.
type nacosInstance struct {
	IP          string  `json:"ip"`
	Port        int     `json:"port"`
	Weight      float64 `json:"weight"`
	Enabled     bool    `json:"enabled"`
	ClusterName string  `json:"clusterName"`
}

// read finds the instance. found is false when the registry does not know
// it (said then lists what it knows); err is a failed read.
func (n *nacos) read(s *step, quiet bool) (inst nacosInstance, found bool, said string, err error) {
	judge := func(a answer) verdict {
		if a.status == http.StatusNotFound {
			return accepted // "not found" is an answer here
		}
		return judgeStatus(a.status)
	}
	if n.generation == 3 {
		q := n.query("ip", n.ip, "port", strconv.Itoa(n.port))
		r := s.do(call{method: http.MethodGet, bases: []string{n.serverUsed}, path: "/v3/admin/ns/instance?" + q.Encode(), header: jsonAccept, judge: judge, quiet: quiet})
		if r.v != accepted {
			return inst, false, "", errors.New(s.last)
		}
		if r.a.status == http.StatusNotFound {
			return inst, false, fmt.Sprintf("Nacos knows no such instance (%s)", oneLine(r.a.body, 120)), nil
		}
		var body struct {
			Code int           `json:"code"`
			Data nacosInstance `json:"data"`
		}
		if err := decodeJSON(r.a, &body); err != nil {
			return inst, false, "", fmt.Errorf("the instance read-back is %v", err)
		}
		return body.Data, true, "", nil
	}
	q := n.query("pageNo", "1", "pageSize", "1000")
	r := s.do(call{method: http.MethodGet, bases: []string{n.serverUsed}, path: "/v1/ns/catalog/instances?" + q.Encode(), header: jsonAccept, judge: judge, quiet: quiet})
	if r.v != accepted {
		return inst, false, "", errors.New(s.last)
	}
	if r.a.status == http.StatusNotFound {
		return inst, false, fmt.Sprintf("Nacos knows no such service or cluster (%s)", oneLine(r.a.body, 120)), nil
	}
	var body struct {
		List []nacosInstance `json:"list"`
	}
	if err := decodeJSON(r.a, &body); err != nil {
		return inst, false, "", fmt.Errorf("the catalog read-back is %v", err)
	}
	var others []string
	for _, i := range body.List {
		if i.IP == n.ip && i.Port == n.port {
			return i, true, "", nil
		}
		others = append(others, fmt.Sprintf("%s:%d", i.IP, i.Port))
	}
	if len(others) == 0 {
		return inst, false, "Nacos lists no instance in that service and cluster", nil
	}
	return inst, false, "Nacos lists only " + strings.Join(others, ", ") + " in that service and cluster", nil
}

// write sets enabled, keeping the instance's current weight (a PATCH or a
// partial update without one resets it to 1.0).
func (n *nacos) write(s *step, enabled bool, weight float64) error {
	w := strconv.FormatFloat(weight, 'f', -1, 64)
	q := n.query("ip", n.ip, "port", strconv.Itoa(n.port), "enabled", strconv.FormatBool(enabled), "weight", w)
	c := call{bases: []string{n.serverUsed}, keep: s.budget / 5}
	if n.generation == 3 {
		c.method, c.path, c.header = http.MethodPut, "/v3/admin/ns/instance/partial?"+q.Encode(), jsonAccept
		c.judge = func(a answer) verdict {
			var body struct {
				Code int `json:"code"`
			}
			if a.status == http.StatusOK && decodeJSON(a, &body) == nil && body.Code == 0 {
				return accepted
			}
			if a.status == http.StatusOK {
				return rejected
			}
			return judgeStatus(a.status)
		}
	} else {
		c.method, c.path = http.MethodPatch, "/v1/ns/instance?"+q.Encode()
		c.judge = func(a answer) verdict {
			// Only Nacos's own "ok" is success: a 2xx login page from a
			// proxy in front of it is not.
			if a.status == http.StatusOK && !oneOf(a.body, "ok") {
				return rejected
			}
			return judgeStatus(a.status)
		}
	}
	if r := s.do(c); r.v != accepted {
		return errors.New(s.last)
	}
	return nil
}

// prepare detects the server and logs in.
func (n *nacos) prepare(s *step) error {
	if err := n.detect(s); err != nil {
		return err
	}
	return n.login(s)
}

func (n *nacos) offline(s *step) (bool, string) {
	if err := n.prepare(s); err != nil {
		return false, err.Error()
	}
	inst, found, said, err := n.read(s, false)
	switch {
	case err != nil:
		return false, "could not read the instance before disabling it: " + err.Error()
	case !found:
		return false, said + "; check the instance key (annotations sidecar-injector.io/nacos-*, or the app's SPRING_CLOUD_NACOS_DISCOVERY_* variables)"
	}
	if err := n.write(s, false, inst.Weight); err != nil {
		return false, err.Error()
	}
	return n.confirm(s, false, "disabled")
}

// confirm reads the instance back until enabled is want.
func (n *nacos) confirm(s *step, want bool, word string) (bool, string) {
	var last nacosInstance
	var said string
	for {
		inst, found, msg, err := n.read(s, true)
		switch {
		case err != nil:
			return false, "the write was accepted but the read-back failed: " + err.Error()
		case !found:
			said = "the write was accepted, but the read-back no longer finds the instance: " + msg
		case inst.Enabled == want:
			return true, fmt.Sprintf("Nacos %s shows it %s (enabled=%t, weight %s) on %s", n.version, word, inst.Enabled, strconv.FormatFloat(inst.Weight, 'f', -1, 64), n.serverUsed)
		default:
			last = inst
			said = fmt.Sprintf("Nacos answered the write but still shows enabled=%t", last.Enabled)
		}
		if s.left() <= backoffStart || !s.t.clock.Sleep(s.ctx, backoffStart) {
			return false, said
		}
	}
}

func (n *nacos) online(s *step) (bool, string) {
	if err := n.prepare(s); err != nil {
		return false, err.Error()
	}
	// Wait for the restarted app to register (a JVM takes a while).
	for {
		inst, found, said, err := n.read(s, true)
		if err == nil && found {
			if inst.Enabled {
				return true, "already enabled: the registry restored it when the app registered again"
			}
			if err := n.write(s, true, inst.Weight); err != nil {
				return false, err.Error()
			}
			return n.confirm(s, true, "enabled")
		}
		if err != nil {
			said = err.Error()
		}
		if s.left() <= time.Second || !s.t.clock.Sleep(s.ctx, time.Second) {
			return false, "the app did not register again in time: " + said
		}
	}
}
