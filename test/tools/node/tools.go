//go:build tools

// This file is never compiled (the "tools" build tag is never set). It keeps
// the commands install.sh builds in this module's dependency graph, so that
// `go mod tidy` records everything
//
//	go build -o DIR/ k8s.io/kubernetes/cmd/kubelet \
//	    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
//
// needs, from inside this module.
package main

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
