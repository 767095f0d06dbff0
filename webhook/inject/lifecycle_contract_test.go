package inject_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// In classic mode the proxy keeps serving until the app's registry
// offline step, its drain and its own preStop handler are done, and the
// grace period holds that wait plus the proxy's drain: for every fixture.
func TestClassicProxyOutlastsTheAppsPreStop(t *testing.T) {
	for name, pod := range injectedPods(t) {
		proxy := container(pod, inject.DefaultNames.Proxy)
		if proxy == nil || proxy.Lifecycle == nil || proxy.Lifecycle.PreStop == nil || proxy.Lifecycle.PreStop.Exec == nil {
			continue // native sidecar: Kubernetes stops it after the apps
		}
		ps, err := meshinit.ParseProxyStop(proxy.Lifecycle.PreStop.Exec.Command[3:])
		require.NoError(t, err, name)
		var longest time.Duration
		for _, c := range pod.Spec.Containers {
			if c.Name == proxy.Name || c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
				continue
			}
			p, err := meshinit.ParsePreStop(c.Lifecycle.PreStop.Exec.Command[3:])
			require.NoError(t, err, name)
			d := p.Registry.OfflineTimeout() + time.Duration(p.Sleep) + time.Duration(p.Then.Sleep)
			if len(p.Then.Exec) > 0 || p.Then.HTTPGet != "" {
				d += inject.OriginalHandlerAllowanceSeconds * time.Second
			}
			longest = max(longest, d)
		}
		assert.GreaterOrEqual(t, time.Duration(ps.Wait), longest, "%s: the proxy stops waiting before the app's preStop is done", name)
		grace := int64(30)
		if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = *pod.Spec.TerminationGracePeriodSeconds
		}
		assert.GreaterOrEqual(t, time.Duration(grace)*time.Second, time.Duration(ps.Wait+ps.Drain), "%s: the grace period does not hold the proxy's wait and drain", name)
	}
}

// Several app containers get the offline step where it belongs (golden
// fixtures registry-container-*; the short-drain warning for the registry
// behind spring-cloud is in short-drain-eureka-behind-spring.golden.yaml).
func TestRegistryContainerChoice(t *testing.T) {
	pods := injectedPods(t)
	require.Contains(t, pods, "short-drain-eureka-behind-spring")
	for name, want := range map[string]string{
		"registry-container-annotation": "orders", "registry-container-by-env": "cart", "registry-container-ambiguous": "provider-a",
	} {
		pod := pods[name]
		require.NotNil(t, pod, name)
		for _, c := range pod.Spec.Containers {
			if c.Name == inject.DefaultNames.Proxy {
				continue
			}
			p, err := meshinit.ParsePreStop(c.Lifecycle.PreStop.Exec.Command[3:])
			require.NoError(t, err)
			if c.Name == want {
				assert.NotEqual(t, meshinit.PresetNone, p.Registry.Preset, "%s: %s registers", name, c.Name)
				assert.NotNil(t, c.Lifecycle.PostStart, "%s: %s gets the undo", name, c.Name)
			} else {
				assert.Equal(t, meshinit.PresetNone, p.Registry.Preset, "%s: %s only drains", name, c.Name)
				assert.Nil(t, c.Lifecycle.PostStart, "%s: %s gets no undo", name, c.Name)
			}
		}
	}
}
