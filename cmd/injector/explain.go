package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook"
	"github.com/sidecar-injector/injector/webhook/manifest"
)

// explainTarget reads the pod (or workload's pod template) to explain, and
// the labels of the Namespace objects beside it.
func explainTarget(file, defaultNS string) (*corev1.Pod, string, map[string]map[string]string, error) {
	if file == "" {
		return nil, defaultNS, nil, nil
	}
	srcs, err := readSources(file, os.Stdin)
	if err != nil {
		return nil, "", nil, err
	}
	pods, err := manifest.Pods(srcs, defaultNS)
	if err != nil {
		return nil, "", nil, err
	}
	if len(pods) != 1 {
		return nil, "", nil, fmt.Errorf("%s holds %d pods or workloads; explain one at a time", file, len(pods))
	}
	nsLabels, err := manifest.NamespaceLabels(srcs)
	if err != nil {
		return nil, "", nil, err
	}
	return pods[0], pods[0].Namespace, nsLabels, nil
}

// explainLabels finds the namespace's labels as inject does: a Namespace
// object in the input, then --namespace-labels; or one look-up in a
// cluster.
func explainLabels(cc cliConfig, kubeconfig, ns string, fromInput map[string]map[string]string) (map[string]string, error) {
	if l, ok := fromInput[ns]; ok && kubeconfig == "" {
		return l, nil
	}
	if kubeconfig == "" {
		static, err := cc.labels()
		if err != nil {
			return nil, err
		}
		if l, ok := static[ns]; ok {
			return l, nil
		}
		return static["*"], nil
	}
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cached, err := webhook.NewCachedNamespaces(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = cached.Start(ctx) }()
	for cached.Ready() != nil {
		select {
		case <-ctx.Done():
			return nil, errors.New("could not read namespaces from the cluster within 30s")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return cached.Labels(ctx, ns)
}
