package hook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// httpClient ignores HTTP_PROXY and friends: the app's JVM does not use them
// for its registry traffic, so neither does the hook that speaks for it.
// Every call carries its own deadline through its context. It never follows
// a redirect: a registry, QoS port or Envoy admin API that answers 3xx has
// not done what was asked, and following it would turn, say, a 302 to a
// login page into a 200 that looks like success.
var httpClient = &http.Client{
	Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// kubeletLikeClient runs an app's own httpGet lifecycle handler the way the
// kubelet would: HTTPS without certificate verification (the handler names
// no CA, and the kubelet does not check one), and redirects followed only
// on the same host.
var kubeletLikeClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // as the kubelet does
	CheckRedirect: sameHostRedirects,
}

// sameHostRedirects is the kubelet's redirect rule for httpGet lifecycle
// handlers (pkg/probe/http RedirectChecker(false)): follow a redirect to the
// same host name, at most 10; a redirect to another host is not followed,
// and its 3xx answer is the handler's result.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// verdict is what one answer means for the call.
type verdict int

const (
	accepted  verdict = iota // done
	notHere                  // this server does not know the thing asked for: try the next server
	transient                // may work if tried again (connection error, timeout, 5xx, 429)
	rejected                 // will not work however often it is tried
)

// answer is one HTTP exchange.
type answer struct {
	status int
	body   string
	// location is a 3xx answer's Location: the redirect not followed.
	location string
	// via is the URL that answered when same-host redirects were followed.
	via string
	// stalled is set when the status and headers came but the body did
	// not finish in time: the server received the request, so a write may
	// have happened even though the answer is incomplete.
	stalled bool
	err     error
	took    time.Duration
}

// isRedirect reports an answer that is a redirect the client did not follow.
func (a answer) isRedirect() bool {
	return a.err == nil && a.status >= 300 && a.status < 400 && a.location != ""
}

func (a answer) String() string {
	took := fmtDuration(a.took)
	switch {
	case a.stalled:
		return fmt.Sprintf("%d %s, then the body stalled after %d bytes (%q) and was cut off after %s", a.status, http.StatusText(a.status), len(a.body), oneLine(a.body, 60), took)
	case a.isRedirect():
		return fmt.Sprintf("%d %s redirecting to %q (not followed) in %s", a.status, http.StatusText(a.status), meshinit.RedactURL(a.location), took)
	case a.err == nil && a.via != "":
		return fmt.Sprintf("%d (after a redirect to %s) in %s", a.status, meshinit.RedactURL(a.via), took)
	case a.err == nil && a.body != "":
		return fmt.Sprintf("%d %q in %s", a.status, oneLine(a.body, 100), took)
	case a.err == nil:
		return fmt.Sprintf("%d in %s", a.status, took)
	case errors.Is(a.err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer (no status line) after %s", took)
	}
	err := a.err
	var ue *url.Error
	if errors.As(err, &ue) { // the URL is already on the line
		err = ue.Err
	}
	return fmt.Sprintf("error: %v (after %s)", err, took)
}

// exchange sends one request bounded by timeout (none when zero) on t's
// clock and reads up to 64 KiB of the answer (registry read-backs list
// instances).
func (t *tool) exchange(ctx context.Context, timeout time.Duration, method, target string, header http.Header, body string) answer {
	return t.exchangeWith(httpClient, ctx, timeout, method, target, header, body)
}

func (t *tool) exchangeWith(client *http.Client, ctx context.Context, timeout time.Duration, method, target string, header http.Header, body string) answer {
	start := t.clock.Now()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = t.clock.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return answer{err: invalidRequestError{err}, took: t.since(start)}
	}
	for k, vs := range header {
		for _, v := range vs {
			if err := meshinit.CheckHeader(k, v); err != nil {
				return answer{err: invalidRequestError{err}, took: t.since(start)}
			}
		}
		req.Header[k] = vs
	}
	// As the kubelet builds a handler's request (newProbeRequest): a Host
	// header names the virtual host, and a User-Agent given is kept.
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	req.Header.Del("Host")
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header.Set("User-Agent", "mesh-init-hook")
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return answer{err: err, took: t.since(start)}
	}
	defer resp.Body.Close()
	if t.onHeaders != nil {
		t.onHeaders(method, req.URL.Host+req.URL.Path)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	a := answer{status: resp.StatusCode, body: string(b), took: t.since(start)}
	if err != nil {
		// The status came, the body did not: say so, rather than "no
		// answer", because the server did receive the request.
		a.stalled = true
		return a
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		a.location = resp.Header.Get("Location")
	}
	if u := resp.Request.URL.String(); u != req.URL.String() {
		a.via = u
	}
	return a
}

// invalidRequestError is a request that cannot be sent as built (a bad
// method, URL or header): no server was asked, and another try would fail
// the same way.
type invalidRequestError struct{ err error }

func (e invalidRequestError) Error() string { return "invalid request: " + e.err.Error() }
func (e invalidRequestError) Unwrap() error { return e.err }

// permanentError says why a failed exchange will fail the same way however
// often it is tried, or returns "" for errors that may pass (connection
// refused or reset, no answer in time, DNS).
func permanentError(err error) string {
	var (
		invalid    invalidRequestError
		verify     *tls.CertificateVerificationError
		authority  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		badCert    x509.CertificateInvalidError
		notTLS     tls.RecordHeaderError
		tlsRefused tls.AlertError
	)
	switch {
	case errors.As(err, &invalid):
		return "the request cannot be sent as given"
	case errors.Is(err, http.ErrSchemeMismatch):
		return "the server speaks plain HTTP; the URL must be http://, not https://"
	case errors.As(err, &verify), errors.As(err, &authority), errors.As(err, &hostname), errors.As(err, &badCert):
		return "the server's certificate is not trusted, and will not be on another try"
	case errors.As(err, &notTLS):
		return "the server does not speak TLS"
	case errors.As(err, &tlsRefused):
		return "the server refused the TLS handshake"
	}
	return ""
}

// judgeStatus is the common reading of a status code: 2xx is done; request
// timeouts, throttling and 5xx may pass on another try; anything else will
// not.
func judgeStatus(status int) verdict {
	switch {
	case status >= 200 && status < 300:
		return accepted
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly,
		status == http.StatusTooManyRequests, status >= 500:
		return transient
	}
	return rejected
}
