// Package anchor builds Istio's sidecar injection webhook (istio.io/istio
// pkg/kube/inject) configured as a default install would configure it, so
// the project's benchmarks can put Istio's injector beside ours on the same
// review and the same API server.
//
// The configuration is not written by hand: Istio's own installer
// (operator/pkg/render, what `istioctl install` and `istioctl manifest
// generate` run) renders Istio's charts, compiled into the istio module
// (manifests.FS), with the default profile; the injector's ConfigMap
// (`istio-sidecar-injector`: the injection templates from
// manifests/charts/istio-control/istio-discovery/files/ and the chart's
// values) and the mesh ConfigMap (`istio`: MeshConfig) are taken from that
// output and handed to inject.NewWebhook the way istiod hands them over.
package anchor

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/multicluster"
)

// IstioModuleVersion is the istio.io/istio version this module builds
// (keep it equal to go.mod's).
const IstioModuleVersion = "v0.0.0-20260827124520-eed52ebb66ad"

// DefaultTag is the tag Istio's own build gives the images of that commit:
// the VERSION file (1.31) plus "-dev" (Makefile.core.mk).
const DefaultTag = "1.31-dev"

// Options configure the injector the way an install's values would.
type Options struct {
	// Hub and Tag of the proxy image (docker.io/istio and DefaultTag when
	// empty): the image is docker.io/istio/proxyv2:1.31-dev.
	Hub, Tag string
	// Revision is the istio.io/rev the injector serves; "" is the default
	// revision.
	Revision string
	// Profile is the installation profile ("default" when empty).
	Profile string
	// NativeSidecars is ENABLE_NATIVE_SIDECARS. Istiod's default is "auto",
	// which turns them on when every node's kubelet is 1.33 or newer, so on
	// a Kubernetes 1.36 cluster it is on. The anchor has no node informer,
	// so "auto" is resolved here: true is what istiod decides on 1.36.
	NativeSidecars bool
	// Set are further `istioctl install --set` flags (for example
	// "values.global.proxy.resources.requests.cpu=10m").
	Set []string
}

// Anchor is Istio's injector, ready to serve.
type Anchor struct {
	// Handler serves /inject (and /inject/...) exactly as istiod's HTTPS
	// mux does.
	Handler *http.ServeMux
	Webhook *inject.Webhook
	// InjectorConfig and InjectorValues are the `config` and `values` keys of
	// the rendered istio-sidecar-injector ConfigMap; Mesh is the `mesh` key
	// of the istio ConfigMap.
	InjectorConfig, InjectorValues, Mesh string
	// WebhookConfiguration is Istio's rendered MutatingWebhookConfiguration
	// (its namespace and object selectors), as an object.
	WebhookConfiguration *unstructured.Unstructured
}

// staticWatcher hands istiod's injector the rendered configuration once; it
// never changes (istiod watches the ConfigMap; the content is the same).
type staticWatcher struct {
	cfg    *inject.Config
	values string
}

func (w *staticWatcher) SetHandler(func(*inject.Config, string) error) {}
func (w *staticWatcher) Run(<-chan struct{})                           {}
func (w *staticWatcher) Get() (*inject.Config, string, error)          { return w.cfg, w.values, nil }

// Render runs Istio's installer and returns the injector's config, values,
// the mesh config and the webhook configuration.
func Render(o Options) (config, values, meshYAML string, mwc *unstructured.Unstructured, err error) {
	hub, tag, profile := o.Hub, o.Tag, o.Profile
	if hub == "" {
		hub = "docker.io/istio"
	}
	if tag == "" {
		tag = DefaultTag
	}
	if profile == "" {
		profile = "default"
	}
	set := []string{"profile=" + profile, "hub=" + hub, "tag=" + tag}
	if o.Revision != "" {
		set = append(set, "revision="+o.Revision)
	}
	set = append(set, o.Set...)
	sets, _, err := render.GenerateManifest(nil, set, false, nil, nil)
	if err != nil {
		return "", "", "", nil, fmt.Errorf("render Istio's charts: %w", err)
	}
	injectorCM, meshCM, mwcName := "istio-sidecar-injector", "istio", "istio-sidecar-injector"
	if o.Revision != "" {
		injectorCM += "-" + o.Revision
		meshCM += "-" + o.Revision
		mwcName += "-" + o.Revision
	}
	for _, s := range sets {
		for _, m := range s.Manifests {
			switch {
			case m.GetKind() == "ConfigMap" && m.GetName() == injectorCM:
				config, _ = dataKey(m, "config")
				values, _ = dataKey(m, "values")
			case m.GetKind() == "ConfigMap" && m.GetName() == meshCM:
				meshYAML, _ = dataKey(m, "mesh")
			case m.GetKind() == "MutatingWebhookConfiguration" && m.GetName() == mwcName:
				mwc = m.Unstructured
			}
		}
	}
	if config == "" || values == "" || meshYAML == "" || mwc == nil {
		return "", "", "", nil, errors.New("the rendered install has no injector ConfigMap, mesh ConfigMap or webhook configuration")
	}
	return config, values, meshYAML, mwc, nil
}

func dataKey(m manifest.Manifest, key string) (string, bool) {
	s, ok, _ := unstructured.NestedString(m.Object, "data", key)
	return s, ok
}

// New renders the default install and builds istiod's injection webhook
// from it.
func New(o Options) (*Anchor, error) {
	config, values, meshYAML, mwc, err := Render(o)
	if err != nil {
		return nil, err
	}
	if o.NativeSidecars {
		features.EnableNativeSidecars = features.NativeSidecarModeEnabled
	} else {
		features.EnableNativeSidecars = features.NativeSidecarModeDisabled
	}
	cfg, err := inject.UnmarshalConfig([]byte(config))
	if err != nil {
		return nil, fmt.Errorf("injector config: %w", err)
	}
	m, err := mesh.ApplyMeshConfig(meshYAML, mesh.DefaultMeshConfig())
	if err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	// istiod's environment: the mesh config, no ProxyConfig resources (a
	// fresh install has none), and a push context computed from them.
	store := model.NewFakeStore()
	env := &model.Environment{Watcher: meshwatcher.NewTestWatcher(m), ConfigStore: store}
	env.SetPushContext(&model.PushContext{ProxyConfigs: model.GetProxyConfigs(store, m)})
	mux := http.NewServeMux()
	wh, err := inject.NewWebhook(inject.WebhookParameters{
		Watcher:  &staticWatcher{cfg: &cfg, values: values},
		Env:      env,
		Mux:      mux,
		Revision: o.Revision,
		// No cluster: the node client (native sidecar detection) and the
		// namespace client (OpenShift only) resolve to none.
		MultiCluster: multicluster.NewFakeController(),
	})
	if err != nil {
		return nil, fmt.Errorf("istio's webhook: %w", err)
	}
	return &Anchor{Handler: mux, Webhook: wh, InjectorConfig: config, InjectorValues: values, Mesh: meshYAML, WebhookConfiguration: mwc}, nil
}

// WebhookConfigurationFor returns Istio's MutatingWebhookConfiguration
// pointed at url with caBundle (PEM), as YAML: the same webhooks, selectors
// and rules, only the client configuration changed.
func (a *Anchor) WebhookConfigurationFor(url string, caBundle []byte) ([]byte, error) {
	o := a.WebhookConfiguration.DeepCopy()
	hooks, _, err := unstructured.NestedSlice(o.Object, "webhooks")
	if err != nil {
		return nil, err
	}
	for i := range hooks {
		h := hooks[i].(map[string]any)
		h["clientConfig"] = map[string]any{"url": url, "caBundle": base64.StdEncoding.EncodeToString(caBundle)}
	}
	if err := unstructured.SetNestedSlice(o.Object, hooks, "webhooks"); err != nil {
		return nil, err
	}
	return yaml.Marshal(o.Object)
}
