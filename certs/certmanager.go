package certs

import (
	"context"
	"fmt"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// InjectCAFromAnnotation is cert-manager's cainjector annotation: on a
// webhook configuration it names the Certificate ("namespace/name") whose
// CA is copied into every webhook's clientConfig.caBundle.
const InjectCAFromAnnotation = "cert-manager.io/inject-ca-from"

// CertManagerScheme returns a scheme that knows cert-manager's
// cert-manager.io/v1 types (Certificate, Issuer, ClusterIssuer,
// CertificateRequest).
func CertManagerScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := cmapi.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// CertificateReady returns nil when the Certificate's Ready condition is
// True, and otherwise an error that carries the condition's reason and
// message (what cert-manager says is wrong), so /readyz shows it.
func CertificateReady(c *cmapi.Certificate) error {
	name := c.Namespace + "/" + c.Name
	for _, cond := range c.Status.Conditions {
		if cond.Type != cmapi.CertificateConditionReady {
			continue
		}
		if cond.Status == cmmeta.ConditionTrue {
			if c.Status.NotAfter != nil && !c.Status.NotAfter.After(time.Now()) {
				return fmt.Errorf("Certificate %s is Ready but expired at %s", name, c.Status.NotAfter.UTC().Format(time.RFC3339))
			}
			return nil
		}
		return fmt.Errorf("Certificate %s is not Ready (%s): %s", name, cond.Reason, cond.Message)
	}
	return fmt.Errorf("Certificate %s has no Ready condition yet: cert-manager has not processed it (is cert-manager running, and does its Issuer exist?)", name)
}

// CertificateChecker reports whether the injector's serving Certificate is
// Ready, for /readyz in cert-manager mode. Results are cached briefly so
// frequent probes cost one API call per CacheFor.
type CertificateChecker struct {
	// Client reads Certificates (RBAC: get certificates.cert-manager.io).
	Client    client.Reader
	Namespace string
	Name      string
	// CacheFor is how long a result is reused (default 5s).
	CacheFor time.Duration
	// Timeout bounds one API call (default 5s).
	Timeout time.Duration

	mu      sync.Mutex
	checked time.Time
	last    error
}

// NewCertificateChecker builds a checker with its own client for cfg.
func NewCertificateChecker(cfg *rest.Config, namespace, name string) (*CertificateChecker, error) {
	s, err := CertManagerScheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("cert-manager client: %w", err)
	}
	return &CertificateChecker{Client: c, Namespace: namespace, Name: name}, nil
}

// Check implements a readiness check: nil when the Certificate is Ready.
func (c *CertificateChecker) Check() error {
	cacheFor, timeout := c.CacheFor, c.Timeout
	if cacheFor <= 0 {
		cacheFor = 5 * time.Second
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.checked.IsZero() && time.Since(c.checked) < cacheFor {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cert := &cmapi.Certificate{}
	err := c.Client.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: c.Name}, cert)
	switch {
	case apierrors.IsNotFound(err):
		err = fmt.Errorf("Certificate %s/%s does not exist (with --tls-mode=cert-manager the chart creates it; is cert-manager installed?)", c.Namespace, c.Name)
	case err != nil:
		err = fmt.Errorf("reading Certificate %s/%s: %w", c.Namespace, c.Name, err)
	default:
		err = CertificateReady(cert)
	}
	c.checked, c.last = time.Now(), err
	return err
}
