package webhook

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// StaticNamespaces serves labels from a fixed table: for running without a
// cluster (the README's demo, tests, `injector serve --namespace-labels`).
// Unknown namespaces have no labels.
type StaticNamespaces map[string]map[string]string

// Labels implements NamespaceSource.
func (s StaticNamespaces) Labels(_ context.Context, name string) (map[string]string, error) {
	return s[name], nil
}

// ParseNamespaceLabels reads "ns1=k=v,k2=v2;ns2=k=v" into a table. The first
// "=" separates the namespace from its labels.
func ParseNamespaceLabels(s string) (StaticNamespaces, error) {
	out := StaticNamespaces{}
	for _, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		ns, rest, ok := strings.Cut(entry, "=")
		if !ok || ns == "" {
			return nil, fmt.Errorf("%q is not NAMESPACE=KEY=VALUE[,KEY=VALUE]", entry)
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("%q: %q is not KEY=VALUE", entry, kv)
			}
			labels[k] = v
		}
		out[ns] = labels
	}
	return out, nil
}

// String renders the table in the form ParseNamespaceLabels reads.
func (s StaticNamespaces) String() string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		keys := make([]string, 0, len(s[n]))
		for k := range s[n] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kvs := make([]string, len(keys))
		for i, k := range keys {
			kvs[i] = k + "=" + s[n][k]
		}
		parts = append(parts, n+"="+strings.Join(kvs, ","))
	}
	return strings.Join(parts, ";")
}

// CachedNamespaces serves labels from a watch of Namespaces' metadata
// (controller-runtime cache; RBAC: get, list, watch namespaces). No request
// ever calls the API server.
type CachedNamespaces struct {
	cache cache.Cache
	// MissWait is how long a lookup waits for a namespace the cache has not
	// seen yet (one created a moment before its first pod).
	MissWait time.Duration
	synced   chan struct{}
}

// NewCachedNamespaces builds the cache; Start runs it.
func NewCachedNamespaces(cfg *rest.Config) (*CachedNamespaces, error) {
	c, err := cache.New(cfg, cache.Options{Scheme: runtime.NewScheme()})
	if err != nil {
		return nil, fmt.Errorf("namespace cache: %w", err)
	}
	return &CachedNamespaces{cache: c, MissWait: time.Second, synced: make(chan struct{})}, nil
}

func namespaceMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("Namespace"))
	m.APIVersion, m.Kind = "v1", "Namespace"
	return m
}

// Start runs the watch until ctx ends. It returns once the cache has
// synced or failed to.
func (c *CachedNamespaces) Start(ctx context.Context) error {
	if _, err := c.cache.GetInformer(ctx, namespaceMeta()); err != nil {
		return fmt.Errorf("namespace cache: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.cache.Start(ctx) }()
	if !c.cache.WaitForCacheSync(ctx) {
		select {
		case err := <-errc:
			return fmt.Errorf("namespace cache did not sync: %w", err)
		default:
			return errors.New("namespace cache did not sync")
		}
	}
	close(c.synced)
	return nil
}

// Ready reports whether the cache has synced, for /readyz.
func (c *CachedNamespaces) Ready() error {
	select {
	case <-c.synced:
		return nil
	default:
		return errors.New("namespace cache has not synced yet")
	}
}

// Labels implements NamespaceSource.
func (c *CachedNamespaces) Labels(ctx context.Context, name string) (map[string]string, error) {
	if err := c.Ready(); err != nil {
		return nil, err
	}
	var labels map[string]string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, c.MissWait, true, func(context.Context) (bool, error) {
		m := namespaceMeta()
		err := c.cache.Get(ctx, types.NamespacedName{Name: name}, m)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		labels = m.Labels
		return err == nil, err
	})
	switch {
	case err == nil:
		return labels, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case wait.Interrupted(err):
		// Deciding without labels could silently leave a pod of an
		// enabled namespace unmeshed; an error lets the pod's
		// controller retry once the watch has caught up.
		return nil, fmt.Errorf("namespace %q is not in the watch cache after %s; retry shortly", name, c.MissWait)
	}
	return nil, err
}
