package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	admissionregistrationv1client "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

// KubeClient is the part of a clientset the manager uses. A full
// kubernetes.Interface (or its fake) satisfies it; NewKubeClient builds one
// from just the two typed clients, so the injector does not link every API
// group's client.
type KubeClient interface {
	CoreV1() corev1client.CoreV1Interface
	AdmissionregistrationV1() admissionregistrationv1client.AdmissionregistrationV1Interface
}

type typedClients struct {
	core corev1client.CoreV1Interface
	adm  admissionregistrationv1client.AdmissionregistrationV1Interface
}

func (c typedClients) CoreV1() corev1client.CoreV1Interface { return c.core }
func (c typedClients) AdmissionregistrationV1() admissionregistrationv1client.AdmissionregistrationV1Interface {
	return c.adm
}

// NewKubeClient builds the manager's client from a REST config.
func NewKubeClient(cfg *rest.Config) (KubeClient, error) {
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	adm, err := admissionregistrationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return typedClients{core: core, adm: adm}, nil
}

// Keys of the self-managed TLS Secret (type kubernetes.io/tls).
const (
	// SecretCAKey and SecretCAKeyKey are the CA that signs tls.crt.
	SecretCAKey    = "ca.crt"
	SecretCAKeyKey = "ca.key"
	// SecretBundleKey holds every CA the API server must trust: the signing
	// CA, a staged next CA, and a previous CA until it expires. It is what
	// the webhook configuration's caBundle is set to.
	SecretBundleKey = "ca-bundle.crt"
	// SecretNextCAKey and SecretNextCAKeyKey are a CA that is already
	// trusted (in the bundle) but does not sign yet.
	SecretNextCAKey    = "ca-next.crt"
	SecretNextCAKeyKey = "ca-next.key"
)

// Annotations the self-managed mode writes.
const (
	// GenerationAnnotation on the Secret counts its changes by the injector;
	// on the webhook configuration it records which Secret generation the
	// caBundle comes from, so a replica with a stale view never writes an
	// older bundle over a newer one.
	GenerationAnnotation = "sidecar-injector.io/tls-generation"
	// NextCASinceAnnotation on the Secret is when the next CA was added to
	// the bundle (RFC 3339).
	NextCASinceAnnotation = "sidecar-injector.io/ca-next-since"
	// BundleGenerationAnnotation on the webhook configuration: see
	// GenerationAnnotation.
	BundleGenerationAnnotation = "sidecar-injector.io/ca-bundle-generation"
)

// Defaults of the self-managed mode.
const (
	DefaultCAValidity    = 5 * 365 * 24 * time.Hour
	DefaultCertValidity  = 90 * 24 * time.Hour
	DefaultRenewFraction = 2.0 / 3.0
	DefaultCAPropagation = 10 * time.Minute
	DefaultResync        = time.Minute
)

// SelfManagedOptions configure a SelfManaged.
type SelfManagedOptions struct {
	// Client reads and writes the Secret and the webhook configuration.
	Client KubeClient
	// Namespace and SecretName locate the Secret (created when missing).
	Namespace  string
	SecretName string
	// WebhookConfiguration is the MutatingWebhookConfiguration whose every
	// webhook gets the CA bundle as clientConfig.caBundle ("" for none).
	WebhookConfiguration string
	// Hosts are the serving certificate's DNS names and IPs (ServiceHosts).
	Hosts []string
	// CertDir receives tls.crt, tls.key and ca.crt (the bundle), swapped
	// together (WriteDirAtomic); the server's certificate watcher picks
	// them up.
	CertDir string
	// CAValidity and CertValidity are the lifetimes of new CAs and serving
	// certificates (defaults 5 years and 90 days).
	CAValidity   time.Duration
	CertValidity time.Duration
	// RenewFraction of a lifetime after which a certificate is replaced
	// (default 2/3, as cert-manager).
	RenewFraction float64
	// CAPropagation is how long a new CA must have been in the webhook's
	// caBundle before certificates are issued from it, so every API server
	// trusts it first (default 10m).
	CAPropagation time.Duration
	// Resync is how often the Secret and the caBundle are checked when no
	// renewal is due (default 1m): other replicas' changes and a caBundle
	// reset by someone else are picked up within it.
	Resync time.Duration
	Log    *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// SelfManaged keeps the injector's own TLS: a CA and a serving certificate
// in a Secret shared by all replicas, the webhook configuration's caBundle
// and the files the server reads. Replicas race safely: every write is an
// optimistic update on resourceVersion, and a replica that loses re-reads and
// adopts what won, so there is only ever one CA lineage.
//
// Rotation: the serving certificate is re-issued at RenewFraction of its
// life. A CA is replaced in two steps so no request fails: at RenewFraction
// of its life a next CA is generated and added to the caBundle (old + new);
// after CAPropagation, with the caBundle confirmed, it starts signing; the
// old CA leaves the bundle when it expires.
type SelfManaged struct {
	o   SelfManagedOptions
	log *slog.Logger

	mu        sync.Mutex
	firstDone bool
	lastErr   error
	bundleOK  bool
	notAfter  time.Time
	status    Status
}

// Status describes the material in use, for logs and the demo.
type Status struct {
	Generation      int64
	CASubject       string
	CANotAfter      time.Time
	NextCA          string
	BundleSize      int
	ServingSerial   string
	ServingNotAfter time.Time
}

// NewSelfManaged checks the options and fills in defaults.
func NewSelfManaged(o SelfManagedOptions) (*SelfManaged, error) {
	if o.Client == nil {
		return nil, errors.New("self-managed TLS needs a Kubernetes client")
	}
	if o.Namespace == "" || o.SecretName == "" {
		return nil, errors.New("self-managed TLS needs the Secret's namespace and name (--namespace, --tls-secret)")
	}
	if o.CertDir == "" {
		return nil, errors.New("self-managed TLS needs --cert-dir")
	}
	if len(o.Hosts) == 0 {
		return nil, errors.New("self-managed TLS needs at least one host for the serving certificate (--service)")
	}
	if o.CAValidity <= 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CertValidity <= 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.RenewFraction <= 0 || o.RenewFraction >= 1 {
		o.RenewFraction = DefaultRenewFraction
	}
	if o.CAPropagation < 0 {
		return nil, errors.New("the CA propagation delay must not be negative")
	}
	if o.CAPropagation == 0 {
		o.CAPropagation = DefaultCAPropagation
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CertValidity > o.CAValidity {
		return nil, fmt.Errorf("the serving certificate validity (%s) must not exceed the CA validity (%s)", o.CertValidity, o.CAValidity)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SelfManaged{o: o, log: log.With("component", "self-managed-tls", "secret", o.Namespace+"/"+o.SecretName)}, nil
}

// Start runs the first sync, retrying until the certificate files exist
// (the server cannot start without them), then keeps everything in sync in
// the background until ctx ends. A webhook configuration that cannot be
// patched yet does not block Start; Ready reports it.
func (m *SelfManaged) Start(ctx context.Context) error {
	var next time.Duration
	var err error
	backoff := firstSyncBackoff.DelayFunc()
	// The delay is asked for only after a pass that wrote no files: the
	// place to say when the next one comes.
	retryIn := func() time.Duration {
		d := backoff()
		m.log.Warn("self-managed TLS: no certificate yet, retrying", "error", errString(err), "retryIn", d)
		return d
	}
	if werr := wait.DelayFunc(retryIn).Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		next, err = m.Sync(ctx)
		return m.filesWritten(), nil
	}); werr != nil {
		return fmt.Errorf("self-managed TLS: no certificate before shutdown: %v", err)
	}
	if err != nil {
		next = time.Second
	}
	go m.loop(ctx, next)
	return nil
}

// firstSyncBackoff paces Start's passes until the files exist: 0.5s,
// doubling, at most 10s.
var firstSyncBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Cap: 10 * time.Second, Steps: math.MaxInt32}

// loop runs a pass whenever one is due. A failed pass is retried after 1s,
// doubling up to the resync period; a good one resets that.
func (m *SelfManaged) loop(ctx context.Context, next time.Duration) {
	failureBackoff := wait.Backoff{Duration: time.Second, Factor: 2, Cap: m.o.Resync, Steps: math.MaxInt32}
	retry := failureBackoff.DelayFunc()
	for {
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		var err error
		next, err = m.Sync(ctx)
		if err != nil {
			next = retry()
		} else {
			retry = failureBackoff.DelayFunc()
		}
	}
}

func (m *SelfManaged) filesWritten() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.firstDone
}

// Ready is the readiness check: the files are written, the webhook
// configuration's caBundle has been confirmed at least once (later failures
// to re-check it are logged, not reported: they would fail every replica at
// once), and the certificate in use has not expired.
func (m *SelfManaged) Ready() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.firstDone:
		return fmt.Errorf("no certificate yet: %v", errString(m.lastErr))
	case !m.bundleOK:
		return fmt.Errorf("caBundle of MutatingWebhookConfiguration %q not in sync yet: %v", m.o.WebhookConfiguration, errString(m.lastErr))
	case !m.o.Now().Before(m.notAfter):
		return fmt.Errorf("the serving certificate expired at %s and could not be renewed: %v", m.notAfter.UTC().Format(time.RFC3339), errString(m.lastErr))
	}
	return nil
}

// Status returns what is in use.
func (m *SelfManaged) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// errRetry asks Sync to run again at once: another replica won a race.
var errRetry = errors.New("lost an update race; re-reading")

// reread retries a lost race at once, up to five attempts in all: the
// winner has just written, so re-reading is all it takes.
var reread = wait.Backoff{Steps: 5}

// Sync runs one pass: the Secret (created, renewed, rotated as due), the
// caBundle, the files. It returns when the next pass is due.
func (m *SelfManaged) Sync(ctx context.Context) (time.Duration, error) {
	var next time.Duration
	err := retry.OnError(reread, func(err error) bool { return errors.Is(err, errRetry) }, func() error {
		var err error
		next, err = m.sync(ctx)
		return err
	})
	m.mu.Lock()
	m.lastErr = err
	m.mu.Unlock()
	if err != nil {
		// Retried with backoff; Ready reports it while it matters.
		m.log.Warn("self-managed TLS sync failed; retrying", "error", err.Error())
	}
	return next, err
}

func (m *SelfManaged) sync(ctx context.Context) (time.Duration, error) {
	now := m.o.Now()
	secrets := m.o.Client.CoreV1().Secrets(m.o.Namespace)
	secret, err := secrets.Get(ctx, m.o.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		st, err := m.plan(nil, 0, now, false)
		if err != nil {
			return 0, err
		}
		secret = m.newSecret()
		st.store(secret)
		created, err := secrets.Create(ctx, secret, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return 0, errRetry
		}
		if err != nil {
			return 0, fmt.Errorf("creating Secret %s/%s: %w", m.o.Namespace, m.o.SecretName, err)
		}
		m.log.Info("created the TLS Secret with a new CA and serving certificate", "caNotAfter", st.ca.Cert.NotAfter, "servingNotAfter", st.serving.NotAfter)
		secret = created
	} else if err != nil {
		return 0, fmt.Errorf("reading Secret %s/%s: %w", m.o.Namespace, m.o.SecretName, err)
	}

	prevGen, _ := strconv.ParseInt(secret.Annotations[GenerationAnnotation], 10, 64)
	current, perr := loadState(secret)
	if perr != nil {
		m.log.Warn("the TLS Secret is unusable; generating a new CA and certificate", "problem", perr.Error())
		current = nil
	}
	// The caBundle first, from what the Secret holds now: a next CA is
	// trusted everywhere before anything is issued from it, and it may only
	// start signing when the caBundle already had it before this pass.
	wasInSync, bundleErr := false, error(nil)
	if current != nil {
		wasInSync, bundleErr = m.syncBundle(ctx, current)
		if errors.Is(bundleErr, errRetry) {
			return 0, errRetry
		}
	}
	desired, err := m.plan(current, prevGen, now, wasInSync && bundleErr == nil)
	if err != nil {
		return 0, err
	}
	if desired.changed {
		desired.store(secret)
		_, err := secrets.Update(ctx, secret, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return 0, errRetry
		}
		if err != nil {
			return 0, fmt.Errorf("updating Secret %s/%s: %w", m.o.Namespace, m.o.SecretName, err)
		}
		m.log.Info("updated the TLS Secret", "changes", desired.why, "generation", desired.generation)
		_, bundleErr = m.syncBundle(ctx, desired)
		if errors.Is(bundleErr, errRetry) {
			return 0, errRetry
		}
	}
	// Files last: by now the caBundle trusts whatever they hold.
	if err := m.writeFiles(desired); err != nil {
		return 0, err
	}
	m.mu.Lock()
	m.firstDone = true
	m.notAfter = desired.serving.NotAfter
	m.status = desired.status()
	// Sticky: once confirmed, a failed re-check (an API server blip) must
	// not take every replica out of the Service at once; the certificate
	// in use is still trusted.
	m.bundleOK = m.bundleOK || bundleErr == nil
	m.mu.Unlock()
	if bundleErr != nil {
		// Renewals still happen and the files are current; only the
		// caBundle (and with it a CA promotion) waits.
		return 0, bundleErr
	}
	return m.nextPass(desired, now), nil
}

func (m *SelfManaged) newSecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      m.o.SecretName,
			Namespace: m.o.Namespace,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "sidecar-injector"},
		},
		Type: corev1.SecretTypeTLS,
	}
}

// tlsState is the material in the Secret.
type tlsState struct {
	generation int64
	ca         *CA
	next       *CA
	nextSince  time.Time
	// trusted is the caBundle: the signing CA first, then the next one,
	// then earlier CAs until they expire.
	trusted []*x509.Certificate
	serving *x509.Certificate
	certPEM []byte
	keyPEM  []byte

	changed bool
	why     []string
}

func (s *tlsState) bundlePEM() []byte {
	var b bytes.Buffer
	for _, c := range s.trusted {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func (s *tlsState) status() Status {
	st := Status{
		Generation: s.generation, CASubject: s.ca.Cert.Subject.CommonName, CANotAfter: s.ca.Cert.NotAfter,
		BundleSize: len(s.trusted), ServingSerial: s.serving.SerialNumber.Text(16), ServingNotAfter: s.serving.NotAfter,
	}
	if s.next != nil {
		st.NextCA = s.next.Cert.Subject.CommonName
	}
	return st
}

func (s *tlsState) store(secret *corev1.Secret) {
	caKey, _ := s.ca.KeyPEM()
	data := map[string][]byte{
		corev1.TLSCertKey:       s.certPEM,
		corev1.TLSPrivateKeyKey: s.keyPEM,
		SecretCAKey:             s.ca.CertPEM,
		SecretCAKeyKey:          caKey,
		SecretBundleKey:         s.bundlePEM(),
	}
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	delete(secret.Annotations, NextCASinceAnnotation)
	if s.next != nil {
		nextKey, _ := s.next.KeyPEM()
		data[SecretNextCAKey] = s.next.CertPEM
		data[SecretNextCAKeyKey] = nextKey
		secret.Annotations[NextCASinceAnnotation] = s.nextSince.UTC().Format(time.RFC3339Nano)
	}
	secret.Annotations[GenerationAnnotation] = strconv.FormatInt(s.generation, 10)
	secret.Data = data
	secret.Type = corev1.SecretTypeTLS
}

// loadState parses the Secret; an error means it cannot be used at all.
func loadState(secret *corev1.Secret) (*tlsState, error) {
	d := secret.Data
	ca, err := LoadCA(d[SecretCAKey], d[SecretCAKeyKey])
	if err != nil {
		return nil, err
	}
	st := &tlsState{ca: ca, certPEM: d[corev1.TLSCertKey], keyPEM: d[corev1.TLSPrivateKeyKey]}
	st.generation, _ = strconv.ParseInt(secret.Annotations[GenerationAnnotation], 10, 64)
	if len(d[SecretNextCAKey]) > 0 {
		next, err := LoadCA(d[SecretNextCAKey], d[SecretNextCAKeyKey])
		if err != nil {
			return nil, fmt.Errorf("next CA: %w", err)
		}
		since, err := time.Parse(time.RFC3339Nano, secret.Annotations[NextCASinceAnnotation])
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", NextCASinceAnnotation, err)
		}
		st.next, st.nextSince = next, since
	}
	st.trusted = parseBundle(d[SecretBundleKey])
	if st.serving, err = ParseCertificate(st.certPEM); err != nil {
		// Re-issued by plan.
		st.serving = nil
	}
	return st, nil
}

func parseBundle(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// renewAt is when a certificate reaches fraction of its life, counted
// from issuance (NotBefore is backdated by this package).
func renewAt(c *x509.Certificate, fraction float64) time.Time {
	issued := c.NotBefore
	if c.NotAfter.Sub(issued) > backdate {
		issued = issued.Add(backdate)
	}
	return issued.Add(time.Duration(float64(c.NotAfter.Sub(issued)) * fraction))
}

// plan decides the next state from the current one (nil: start afresh
// after generation prevGen). promote says whether the caBundle already had
// the current bundle before this pass, which a staged CA needs before it
// may sign.
func (m *SelfManaged) plan(cur *tlsState, prevGen int64, now time.Time, promote bool) (*tlsState, error) {
	o := m.o
	if cur == nil || !now.Before(cur.ca.Cert.NotAfter) {
		gen := prevGen + 1
		why := "new CA"
		if cur != nil {
			why = "the CA expired; new CA"
		}
		ca, err := newCAAt(caName(now), now, o.CAValidity)
		if err != nil {
			return nil, err
		}
		st := &tlsState{generation: gen, ca: ca, trusted: []*x509.Certificate{ca.Cert}, changed: true, why: []string{why}}
		if err := m.issue(st, now); err != nil {
			return nil, err
		}
		return st, nil
	}
	st := *cur
	st.trusted = slices.Clone(cur.trusted)
	change := func(why string) {
		st.changed = true
		st.why = append(st.why, why)
	}
	// Promote a staged CA once the bundle with it has been out long enough.
	if st.next != nil && promote && !now.Before(st.nextSince.Add(o.CAPropagation)) {
		st.ca, st.next = st.next, nil
		change("the next CA now signs")
		st.serving = nil
	}
	// Stage a next CA at RenewFraction of the signing CA's life.
	if st.next == nil && !now.Before(renewAt(st.ca.Cert, o.RenewFraction)) {
		next, err := newCAAt(caName(now), now, o.CAValidity)
		if err != nil {
			return nil, err
		}
		st.next, st.nextSince = next, now
		change("staged a next CA in the caBundle")
	}
	// The bundle: signing CA, next CA, then earlier CAs still valid.
	want := []*x509.Certificate{st.ca.Cert}
	if st.next != nil {
		want = append(want, st.next.Cert)
	}
	for _, c := range st.trusted {
		if now.Before(c.NotAfter) && !containsCert(want, c) {
			want = append(want, c)
		}
	}
	if !sameCerts(want, st.trusted) {
		if !st.changed {
			change("caBundle updated (expired CAs dropped)")
		}
		st.trusted = want
	}
	if why := m.servingProblem(&st, now); why != "" {
		change(why)
		if err := m.issue(&st, now); err != nil {
			return nil, err
		}
	}
	if st.changed {
		st.generation++
	}
	return &st, nil
}

func caName(now time.Time) string {
	return "sidecar-injector-ca-" + strconv.FormatInt(now.Unix(), 10)
}

// servingProblem says why the serving certificate must be re-issued, or "".
func (m *SelfManaged) servingProblem(st *tlsState, now time.Time) string {
	c := st.serving
	switch {
	case c == nil:
		return "new serving certificate"
	case c.CheckSignatureFrom(st.ca.Cert) != nil:
		return "serving certificate re-issued from the signing CA"
	case !now.Before(c.NotAfter):
		return "serving certificate expired"
	}
	if _, err := tls.X509KeyPair(st.certPEM, st.keyPEM); err != nil {
		return "serving certificate and key do not match"
	}
	for _, h := range m.o.Hosts {
		if !certHasHost(c, h) {
			return "serving certificate lacks host " + h
		}
	}
	if !now.Before(renewAt(c, m.o.RenewFraction)) {
		// A re-issue that would not outlive the current certificate (the
		// CA expires first) is pointless; the next CA takes over before.
		if now.Add(m.o.CertValidity).After(c.NotAfter) && st.ca.Cert.NotAfter.After(c.NotAfter) {
			return "serving certificate renewed at " + strconv.Itoa(int(m.o.RenewFraction*100)) + "% of its life"
		}
	}
	return ""
}

func (m *SelfManaged) issue(st *tlsState, now time.Time) error {
	pair, err := st.ca.issueServingAt(m.o.Hosts, now, m.o.CertValidity)
	if err != nil {
		return err
	}
	serving, err := ParseCertificate(pair.CertPEM)
	if err != nil {
		return err
	}
	st.serving, st.certPEM, st.keyPEM = serving, pair.CertPEM, pair.KeyPEM
	return nil
}

func certHasHost(c *x509.Certificate, h string) bool {
	if ip := net.ParseIP(h); ip != nil {
		for _, a := range c.IPAddresses {
			if a.Equal(ip) {
				return true
			}
		}
		return false
	}
	return slices.Contains(c.DNSNames, h)
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}

// syncBundle sets every webhook's caBundle to the state's bundle. It
// reports whether the configuration already had it (nothing written). It
// never writes a bundle older than the one recorded on the configuration:
// a replica with a stale view of the Secret gets errRetry and re-reads.
func (m *SelfManaged) syncBundle(ctx context.Context, st *tlsState) (bool, error) {
	name := m.o.WebhookConfiguration
	if name == "" {
		return true, nil
	}
	bundle := st.bundlePEM()
	api := m.o.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	inSync := false
	err := retry.RetryOnConflict(reread, func() error {
		mwc, err := api.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("MutatingWebhookConfiguration %q does not exist", name)
		}
		if err != nil {
			return fmt.Errorf("reading MutatingWebhookConfiguration %q: %w", name, err)
		}
		if len(mwc.Webhooks) == 0 {
			return fmt.Errorf("MutatingWebhookConfiguration %q has no webhooks", name)
		}
		differs := false
		for i := range mwc.Webhooks {
			if !bytes.Equal(mwc.Webhooks[i].ClientConfig.CABundle, bundle) {
				mwc.Webhooks[i].ClientConfig.CABundle = bundle
				differs = true
			}
		}
		if !differs {
			inSync = true
			return nil
		}
		recorded, _ := strconv.ParseInt(mwc.Annotations[BundleGenerationAnnotation], 10, 64)
		if recorded > st.generation {
			return errRetry
		}
		if mwc.Annotations == nil {
			mwc.Annotations = map[string]string{}
		}
		mwc.Annotations[BundleGenerationAnnotation] = strconv.FormatInt(st.generation, 10)
		if _, err = api.Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				return err // read again
			}
			return fmt.Errorf("updating the caBundle of MutatingWebhookConfiguration %q: %w", name, err)
		}
		m.log.Info("patched the caBundle of every webhook", "webhookConfiguration", name, "webhooks", len(mwc.Webhooks), "cas", len(st.trusted), "generation", st.generation)
		return nil
	})
	if apierrors.IsConflict(err) {
		// Every attempt lost: let Sync re-read the Secret too.
		return false, errRetry
	}
	return inSync, err
}

// writeFiles writes the pair and the bundle when they differ from disk.
func (m *SelfManaged) writeFiles(st *tlsState) error {
	bundle := st.bundlePEM()
	same := true
	for name, want := range map[string][]byte{CertFile: st.certPEM, KeyFile: st.keyPEM, CAFile: bundle} {
		got, err := os.ReadFile(filepath.Join(m.o.CertDir, name))
		if err != nil || !bytes.Equal(got, want) {
			same = false
		}
	}
	if same {
		return nil
	}
	if err := WriteDirAtomic(m.o.CertDir, &Pair{CertPEM: st.certPEM, KeyPEM: st.keyPEM, NotAfter: st.serving.NotAfter}, bundle); err != nil {
		return fmt.Errorf("writing %s: %w", m.o.CertDir, err)
	}
	m.log.Info("wrote the serving certificate", "dir", m.o.CertDir, "serial", st.serving.SerialNumber.Text(16), "notAfter", st.serving.NotAfter)
	return nil
}

// nextPass is when something is next due: a renewal, a promotion, an
// expiry in the bundle, or the resync.
func (m *SelfManaged) nextPass(st *tlsState, now time.Time) time.Duration {
	due := now.Add(m.o.Resync)
	consider := func(t time.Time) {
		// Past times are either handled already or waiting for something
		// else (a renewal that cannot outlive its CA).
		if t.After(now) && t.Before(due) {
			due = t
		}
	}
	consider(renewAt(st.serving, m.o.RenewFraction))
	consider(st.serving.NotAfter)
	if st.next == nil {
		consider(renewAt(st.ca.Cert, m.o.RenewFraction))
	} else {
		consider(st.nextSince.Add(m.o.CAPropagation))
	}
	for _, c := range st.trusted {
		consider(c.NotAfter)
	}
	d := due.Sub(now) + 10*time.Millisecond
	return max(d, 100*time.Millisecond)
}
