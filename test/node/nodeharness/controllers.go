package nodeharness

import (
	"path/filepath"
	"time"
)

// controllers are kube-controller-manager and kube-scheduler, when built:
// Deployments, ReplicaSets, Jobs, the default ServiceAccount and
// kube-root-ca.crt then behave as in a cluster, and pods need no nodeName.
type controllers struct {
	kcm, scheduler *Proc
}

func startControllers(dir, kubeconfig, rootCA string) (*controllers, error) {
	assets := NodeAssets()
	c := &controllers{}
	var err error
	// --secure-port=0: no serving (nothing scrapes them); no leader
	// election (one of each). The token controller needs the API server's
	// signing key and is left off: tokens come from the TokenRequest API.
	c.kcm, err = startProc("kube-controller-manager", filepath.Join(dir, "kube-controller-manager.log"), nil,
		filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--root-ca-file="+rootCA,
		"--use-service-account-credentials=false",
		"--v=2",
	)
	if err != nil {
		return nil, err
	}
	c.scheduler, err = startProc("kube-scheduler", filepath.Join(dir, "kube-scheduler.log"), nil,
		filepath.Join(assets, "kube-scheduler"),
		"--kubeconfig="+kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--v=2",
	)
	if err != nil {
		_ = c.kcm.Stop(10 * time.Second)
		return nil, err
	}
	return c, nil
}

func (c *controllers) stop() error {
	e1 := c.scheduler.Stop(10 * time.Second)
	e2 := c.kcm.Stop(10 * time.Second)
	if e1 != nil {
		return e1
	}
	return e2
}

func (c *controllers) exited() error {
	if err := c.kcm.exitError(); err != nil {
		return err
	}
	return c.scheduler.exitError()
}
