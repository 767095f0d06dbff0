//go:build tools

// This file is never compiled (the "tools" build tag is never set). It keeps
// k8s.io/kubernetes/cmd/kube-apiserver in this module's dependency graph so
// that `go mod tidy` records everything needed for
//
//	go build k8s.io/kubernetes/cmd/kube-apiserver
//
// to work from inside this module.
package main

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
