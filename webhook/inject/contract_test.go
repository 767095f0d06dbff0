package inject_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// injected returns every injected fixture's pod.
func injectedPods(t *testing.T) map[string]*corev1.Pod {
	t.Helper()
	cases, err := podcases.LoadCases(filepath.Join("testdata", "pods"))
	require.NoError(t, err)
	out := map[string]*corev1.Pod{}
	for _, c := range cases {
		pod, d := c.Engine(t).Inject(c.Pod, c.Namespace)
		if d.Result == inject.Injected {
			out[c.Name] = pod
		}
	}
	require.NotEmpty(t, out)
	return out
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// The init container's arguments are exactly what mesh-init's own parser
// accepts, and they carry the pod's effective capture settings.
func TestInitContainerArgsParseWithMeshInit(t *testing.T) {
	for name, pod := range injectedPods(t) {
		t.Run(name, func(t *testing.T) {
			c := container(pod, inject.DefaultNames.Init)
			require.NotNil(t, c)
			require.Equal(t, []string{"mesh-init"}, c.Command)
			require.Contains(t, []string{"capture", "validate"}, c.Args[0], "capture, or validate in the cni capture mode")
			cmd, err := meshinit.ParseCaptureCommand(c.Args[1:], nil)
			require.NoError(t, err, "mesh-init must accept the rendered args %q", c.Args)
			assert.Equal(t, c.Args[1:], cmd.Args(), "rendering the parsed command gives the same args back")
			assert.Equal(t, inject.DefaultPaths.Tool, cmd.CopySelfTo)
			// The bootstrap mesh-init writes is where Envoy reads it, in
			// the volume both mount, and is valid JSON.
			assert.Equal(t, inject.DefaultPaths.Bootstrap, cmd.EnvoyBootstrapTo)
			assert.True(t, strings.HasPrefix(cmd.EnvoyBootstrapTo, inject.DefaultPaths.ToolsDir+"/"))
			b, err := meshinit.DecodeFile(cmd.EnvoyBootstrap)
			require.NoError(t, err)
			assert.True(t, json.Valid(b), "the bootstrap is JSON")
			proxy := container(pod, inject.DefaultNames.Proxy)
			require.NotNil(t, proxy)
			assert.Equal(t, []string{"--config-path", inject.DefaultPaths.Bootstrap}, proxy.Args[:2])
			assert.True(t, mounts(*proxy, inject.DefaultNames.ToolsVolume, inject.DefaultPaths.ToolsDir))
			assert.False(t, cmd.DryRun)
			assert.False(t, cmd.Cleanup)
			assert.Equal(t, uint32(1337), cmd.Config.ProxyUID)
		})
	}
}

// The every-override fixture's annotations reach mesh-init's parsed config.
func TestCaptureOverridesReachMeshInit(t *testing.T) {
	pod := injectedPods(t)["every-override"]
	c := container(pod, inject.DefaultNames.Init)
	cmd, err := meshinit.ParseCaptureCommand(c.Args[1:], nil)
	require.NoError(t, err)
	cfg := cmd.Config
	assert.Equal(t, "8080,9000-9100", cfg.IncludeInboundPorts.String())
	assert.Equal(t, "9090", cfg.ExcludeInboundPorts.String())
	assert.Equal(t, "443", cfg.IncludeOutboundPorts.String())
	assert.Equal(t, "5432,8761", cfg.ExcludeOutboundPorts.String())
	assert.Equal(t, "10.0.0.0/8,fd00:10::/64", cfg.IncludeOutboundCIDRs.String())
	assert.Equal(t, "10.96.0.1/32,fd00:10::1/128", cfg.ExcludeOutboundCIDRs.String())
	assert.Equal(t, []string{"10.96.0.1/32"}, prefixes(cfg.ExcludeOutboundCIDRs.Family(false)))
	assert.Equal(t, []string{"fd00:10::1/128"}, prefixes(cfg.ExcludeOutboundCIDRs.Family(true)))
	assert.Equal(t, meshinit.ModeLegacy, cfg.Mode)
}

func prefixes(l meshinit.CIDRList) []string {
	out := make([]string, len(l))
	for i, p := range l {
		out[i] = p.String()
	}
	return out
}

// Every exec hook runs the tool from the shared volume, that volume is
// mounted where the hook runs, and its arguments parse with the hook tool's
// own parsers: hooks work in any image, distroless included.
func TestHooksExecTheToolFromTheSharedVolume(t *testing.T) {
	for name, pod := range injectedPods(t) {
		t.Run(name, func(t *testing.T) {
			hasVolume := false
			for _, v := range pod.Spec.Volumes {
				if v.Name == inject.DefaultNames.ToolsVolume {
					hasVolume = v.EmptyDir != nil
				}
			}
			require.True(t, hasVolume, "the tools volume is an emptyDir of the pod")
			for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
				for _, c := range list {
					for _, cmd := range execCommands(c) {
						if cmd[0] != inject.DefaultPaths.Tool {
							continue
						}
						assert.True(t, mounts(c, inject.DefaultNames.ToolsVolume, inject.DefaultPaths.ToolsDir),
							"container %q runs %s but does not mount %s there", c.Name, cmd[0], inject.DefaultNames.ToolsVolume)
						require.GreaterOrEqual(t, len(cmd), 3)
						require.Equal(t, "hook", cmd[1])
						assert.NoError(t, parseHook(cmd[2], cmd[3:]), "container %q: %q", c.Name, cmd)
					}
				}
			}
			// Every app container has the preStop hook from the tool.
			st, ok, err := inject.ReadStatus(pod)
			require.NoError(t, err)
			require.True(t, ok)
			for _, a := range st.Apps {
				c := container(pod, a.Name)
				if a.SetPreStop {
					require.NotNil(t, c.Lifecycle.PreStop.Exec)
					assert.Equal(t, inject.DefaultPaths.Tool, c.Lifecycle.PreStop.Exec.Command[0])
				}
			}
			// mesh-init, which installs the tool, mounts it writable.
			initc := container(pod, inject.DefaultNames.Init)
			for _, m := range initc.VolumeMounts {
				if m.Name == inject.DefaultNames.ToolsVolume {
					assert.False(t, m.ReadOnly)
					assert.Equal(t, inject.DefaultPaths.ToolsDir, m.MountPath)
				}
			}
			// In native mode the tool is installed before the proxy and the
			// apps start: mesh-init is the first init container.
			if st.Native {
				assert.Equal(t, inject.DefaultNames.Init, pod.Spec.InitContainers[0].Name)
			}
		})
	}
}

func execCommands(c corev1.Container) [][]string {
	var out [][]string
	if len(c.Command) > 0 {
		out = append(out, c.Command)
	}
	if c.Lifecycle != nil {
		for _, h := range []*corev1.LifecycleHandler{c.Lifecycle.PreStop, c.Lifecycle.PostStart} {
			if h != nil && h.Exec != nil {
				out = append(out, h.Exec.Command)
			}
		}
	}
	return out
}

func mounts(c corev1.Container, volume, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume && m.MountPath == path {
			return true
		}
	}
	return false
}

func parseHook(name string, args []string) error {
	var err error
	switch name {
	case "prestop":
		_, err = meshinit.ParsePreStop(args)
	case "poststart":
		_, err = meshinit.ParsePostStart(args)
	case "wait-ready":
		_, err = meshinit.ParseWaitReady(args)
	case "proxy-stop":
		_, err = meshinit.ParseProxyStop(args)
	case "run":
		_, err = meshinit.ParseRun(args)
	default:
		err = assert.AnError
	}
	return err
}

// An app's own preStop handler survives: the hook runs it after the sleep.
func TestOriginalPreStopIsKept(t *testing.T) {
	pods := injectedPods(t)
	exec := container(pods["existing-prestop-exec"], "app").Lifecycle.PreStop.Exec.Command
	p, err := meshinit.ParsePreStop(exec[3:])
	require.NoError(t, err)
	assert.Equal(t, []string{"/bin/sh", "-c", "kill -USR1 1; sleep 2"}, p.Then.Exec)
	assert.Equal(t, meshinit.PresetDubbo, p.Registry.Preset)
	assert.NotNil(t, container(pods["existing-prestop-exec"], "app").Lifecycle.PostStart, "postStart untouched")

	get := container(pods["existing-prestop-http"], "app").Lifecycle.PreStop.Exec.Command
	p, err = meshinit.ParsePreStop(get[3:])
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8081/shutdown", p.Then.HTTPGet, "named port resolved, path made absolute")
	assert.Equal(t, []string{"X-Reason: prestop"}, p.Then.HTTPHeaders)
}

// Classic Job pods run their command through the hook tool so Envoy quits
// when the app exits; native ones need nothing.
func TestJobCommandsAreWrappedInClassicModeOnly(t *testing.T) {
	pods := injectedPods(t)
	c := container(pods["job-pod"], "report")
	require.Equal(t, inject.DefaultPaths.Tool, c.Command[0])
	r, err := meshinit.ParseRun(c.Command[3:])
	require.NoError(t, err)
	assert.Equal(t, []string{"/report"}, r.Command)
	assert.Equal(t, []string{"--since", "24h"}, c.Args, "args are kept and follow the wrapped command")
	assert.True(t, strings.HasSuffix(r.QuitURL, "/quitquitquit"))

	n := container(pods["job-pod-native"], "nightly")
	assert.Equal(t, []string{"/nightly"}, n.Command)
	proxy := pods["job-pod-native"].Spec.InitContainers[1]
	require.NotNil(t, proxy.RestartPolicy)
	assert.Equal(t, corev1.ContainerRestartPolicyAlways, *proxy.RestartPolicy)
	assert.Nil(t, proxy.StartupProbe, "a startup probe would hold the app until its next 1s tick")
	require.NotNil(t, proxy.Lifecycle, "native proxy holds the app with its postStart hook")
	require.NotNil(t, proxy.Lifecycle.PostStart)
	require.NotNil(t, proxy.Lifecycle.PostStart.Exec)
	assert.Equal(t, []string{inject.DefaultPaths.Tool, "hook", "wait-ready"}, proxy.Lifecycle.PostStart.Exec.Command[:3])
	assert.Nil(t, proxy.Lifecycle.PreStop, "a native proxy stops after the app by itself")
}

// The grace period is raised to fit offline + sleep + shutdown, never
// lowered.
func TestGracePeriod(t *testing.T) {
	pods := injectedPods(t)
	assert.Equal(t, int64(60), *pods["grace-period-raised"].Spec.TerminationGracePeriodSeconds)
	assert.Equal(t, int64(60), *pods["existing-prestop-exec"].Spec.TerminationGracePeriodSeconds, "60 >= 5+5+20 stays")
	assert.Nil(t, pods["plain"].Spec.TerminationGracePeriodSeconds, "5+20 fits the default 30: untouched")
	def := policy.Defaults().Lifecycle
	assert.LessOrEqual(t, int64(def.Drain()+def.ShutdownSeconds), int64(30))
}

// An app's httpGet preStop with a header the hook tool cannot send keeps
// its own handler, with a warning, rather than getting a hook that would
// exit 2 and skip the drain sleep.
func TestUnsendablePreStopHeaderKeepsTheHandler(t *testing.T) {
	e, err := inject.New(policy.BuiltinConfig(), podcases.Options(true))
	require.NoError(t, err)
	get := &corev1.HTTPGetAction{Path: "/stop", Port: intstr.FromInt32(8080), HTTPHeaders: []corev1.HTTPHeader{{Name: "X-A", Value: "b\r\nX-Evil: 1"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app",
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: get}}}}}}
	out, d := e.Inject(pod, inject.Namespace{Name: "shop", Labels: map[string]string{policy.NamespaceLabel: "enabled"}})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	assert.Equal(t, get, container(out, "app").Lifecycle.PreStop.HTTPGet)
	assert.Contains(t, strings.Join(d.Warnings, "\n"), "cannot be sent")
}

// The injector never renders a hook argument the tool would refuse: every
// preset with every annotation's example value (and the app's own handlers
// of every kind) renders hooks that parse.
func TestEveryRenderedHookParses(t *testing.T) {
	e, err := inject.New(policy.BuiltinConfig(), podcases.Options(false))
	require.NoError(t, err)
	for _, preset := range meshinit.Presets {
		for _, o := range policy.Overrides {
			ann := map[string]string{policy.Prefix + "registry": string(preset), o.Key(): o.Example}
			if o.Name == "registry" {
				ann[o.Key()] = string(preset)
			}
			if preset == meshinit.PresetHTTP && o.Name != "offline-http-url" {
				ann[policy.Prefix+"offline-http-url"] = "http://127.0.0.1:8080/offline"
			}
			if preset == meshinit.PresetHTTP && o.Name == "offline-http-check-body" {
				ann[policy.Prefix+"offline-http-check-url"] = "http://127.0.0.1:8080/registration"
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Annotations: ann},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					Lifecycle: &corev1.Lifecycle{
						PreStop:   &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/stop", Port: intstr.FromString("http"), HTTPHeaders: []corev1.HTTPHeader{{Name: "X-A", Value: "b: c"}}}},
						PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/warm", "--registry=x"}}},
					}}}},
			}
			out, d := e.Inject(pod, inject.Namespace{Name: "shop", Labels: map[string]string{policy.NamespaceLabel: "enabled"}})
			if d.Result != inject.Injected {
				if o.Name == "registry-container" {
					continue // names a container this pod does not have
				}
				t.Errorf("%s with %s=%q: %s", preset, o.Key(), ann[o.Key()], d.Message)
				continue
			}
			for _, list := range [][]corev1.Container{out.Spec.InitContainers, out.Spec.Containers} {
				for _, c := range list {
					for _, cmd := range execCommands(c) {
						if cmd[0] == inject.DefaultPaths.Tool {
							assert.NoError(t, parseHook(cmd[2], cmd[3:]), "%s with %s: %q", preset, o.Key(), cmd)
						}
					}
				}
			}
		}
	}
}

// mesh-init's CPU limit is the proxy's by default (a lower quota slowed
// every pod's start, docs/lossless.md) and never above the proxy's, so it
// never raises the pod's effective CPU limit: that is the larger of the
// sum over the containers, the proxy included, and any one init
// container's.
func TestInitCPULimitIsAtMostTheProxys(t *testing.T) {
	e, err := inject.New(policy.BuiltinConfig(), podcases.Options(true))
	require.NoError(t, err)
	ns := inject.Namespace{Name: "shop", Labels: map[string]string{policy.NamespaceLabel: "enabled"}}
	for _, tc := range []struct{ proxyLimit, want string }{
		{"", "2"},        // the defaults: both 2
		{"500m", "500m"}, // a smaller proxy: mesh-init follows it
		{"4", "2"},       // a larger proxy: mesh-init keeps its own
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if tc.proxyLimit != "" {
			pod.Annotations = map[string]string{"sidecar-injector.io/proxy-cpu-limit": tc.proxyLimit}
		}
		out, d := e.Inject(pod, ns)
		require.Equal(t, inject.Injected, d.Result, "%s: %s", tc.proxyLimit, d.Message)
		var init *corev1.Container
		for i := range out.Spec.InitContainers {
			if out.Spec.InitContainers[i].Name == inject.DefaultNames.Init {
				init = &out.Spec.InitContainers[i]
			}
		}
		require.NotNil(t, init)
		got := init.Resources.Limits[corev1.ResourceCPU]
		assert.Equal(t, tc.want, got.String(), "proxy limit %q", tc.proxyLimit)
	}
}
