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
	notHere                  // the server is fine but this path is not the one: try the next path
	transient                // may work if tried again (connection error, timeout, 5xx, 429)
	rejected                 // will not work however often it is tried
)

// request is one logical HTTP call: a preset's offline call, the proxy's
// drain or quit.
type request struct {
	// what names the step in every line, such as "eureka offline".
	what   string
	method string
	// bases are equivalent servers; a transient failure moves to the next.
	bases []string
	// paths are candidate paths (with query) on a server, tried in order
	// while the answer is notHere, such as Spring Cloud's old and new
	// endpoint names or Eureka instance ids.
	paths  []string
	header http.Header
	body   string
	judge  func(status int, body string) verdict
	// hint follows the last line when every path answered notHere: what
	// to set so the right one is found.
	hint string
	// notes are printed on one line before the first request: where the
	// defaults came from.
	notes []string
	// redirectHint follows a redirect answer that was not accepted: why
	// the call is not followed elsewhere.
	redirectHint string
}

// policy bounds a request's retries.
type policy struct {
	total      time.Duration // bound on the whole call, pauses included
	attempts   int           // tries on transient failures
	perAttempt time.Duration // bound on one request
	backoff    time.Duration // first pause between tries, doubled after each
}

// offlinePolicy spends the offline timeout on up to three tries: each gets a
// third of it (at least 100ms), with 200ms and 400ms pauses between them.
// The last try is cut short by the overall bound when earlier ones used
// their whole share.
func offlinePolicy(total time.Duration) policy {
	if total <= 0 {
		total = meshinit.DefaultOfflineTimeout
	}
	per := max(total/3, 100*time.Millisecond)
	return policy{total: total, attempts: 3, perAttempt: min(per, total), backoff: 200 * time.Millisecond}
}

// outcome is how a request ended.
type outcome struct {
	ok       bool
	requests int
	// last is the final request and its answer, for the summary line:
	// "PUT http://... -> 500 in 3ms".
	last string
}

// answer is one HTTP exchange.
type answer struct {
	status int
	body   string
	// location is a 3xx answer's Location: the redirect not followed.
	location string
	// via is the URL that answered when same-host redirects were followed.
	via  string
	err  error
	took time.Duration
}

// isRedirect reports an answer that is a redirect the client did not follow.
func (a answer) isRedirect() bool {
	return a.err == nil && a.status >= 300 && a.status < 400 && a.location != ""
}

func (a answer) String() string {
	took := fmtDuration(a.took)
	switch {
	case a.isRedirect():
		return fmt.Sprintf("%d %s redirecting to %q (not followed) in %s", a.status, http.StatusText(a.status), meshinit.RedactURL(a.location), took)
	case a.err == nil && a.via != "":
		return fmt.Sprintf("%d (after a redirect to %s) in %s", a.status, meshinit.RedactURL(a.via), took)
	case a.err == nil && a.body != "":
		return fmt.Sprintf("%d %q in %s", a.status, oneLine(a.body, 100), took)
	case a.err == nil:
		return fmt.Sprintf("%d in %s", a.status, took)
	case errors.Is(a.err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer after %s", took)
	}
	err := a.err
	var ue *url.Error
	if errors.As(err, &ue) { // the URL is already on the line
		err = ue.Err
	}
	return fmt.Sprintf("error: %v (after %s)", err, took)
}

// exchange sends one request bounded by timeout (none when zero) and reads
// up to 4 KiB of the answer.
func exchange(ctx context.Context, timeout time.Duration, method, target string, header http.Header, body string) answer {
	return exchangeWith(httpClient, ctx, timeout, method, target, header, body)
}

func exchangeWith(client *http.Client, ctx context.Context, timeout time.Duration, method, target string, header http.Header, body string) answer {
	start := time.Now()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return answer{err: invalidRequestError{err}, took: time.Since(start)}
	}
	for k, vs := range header {
		for _, v := range vs {
			if err := meshinit.CheckHeader(k, v); err != nil {
				return answer{err: invalidRequestError{err}, took: time.Since(start)}
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
		return answer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil && ctx.Err() != nil {
		return answer{err: ctx.Err(), took: time.Since(start)}
	}
	a := answer{status: resp.StatusCode, body: string(b), took: time.Since(start)}
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

// send runs a request under a policy, one line per HTTP exchange.
func (t *tool) send(ctx context.Context, p policy, r request) outcome {
	ctx, cancel := context.WithTimeout(ctx, p.total)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if len(r.notes) > 0 {
		t.logf("%s: using %s", r.what, strings.Join(r.notes, "; "))
	}
	judge := r.judge
	if judge == nil {
		judge = func(status int, _ string) verdict { return judgeStatus(status) }
	}
	var (
		base, path, tries int
		backoff           = p.backoff
		out               outcome
	)
	for {
		target := r.bases[base%len(r.bases)] + r.paths[path]
		a := exchange(ctx, p.perAttempt, r.method, target, r.header, r.body)
		out.requests++
		out.last = fmt.Sprintf("%s %s -> %s", r.method, meshinit.RedactURL(target), a)
		line := r.what + " " + out.last
		v, why := transient, ""
		if a.err == nil {
			v = judge(a.status, a.body)
		} else if why = permanentError(a.err); why != "" {
			v = rejected
		}
		switch v {
		case accepted:
			t.logf("%s", line)
			out.ok = true
			return out
		case rejected:
			switch {
			case a.isRedirect():
				why = "redirects are not followed"
				if r.redirectHint != "" {
					why += "; " + r.redirectHint
					out.last += "; " + r.redirectHint
				}
			case why == "":
				why = "another try would get the same answer"
			}
			t.logf("%s; not retried: %s", line, why)
			return out
		case notHere:
			path++
			if path == len(r.paths) {
				if r.hint != "" {
					out.last += " (" + r.hint + ")"
				}
				t.logf("%s %s; no other candidate to try", r.what, out.last)
				return out
			}
			t.logf("%s; trying the next candidate", line)
			continue
		}
		tries++
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			t.logf("%s; interrupted", line)
			return out
		case ctx.Err() != nil:
			t.logf("%s; gave up: the %s bound is reached", line, fmtDuration(p.total))
			return out
		case tries >= p.attempts:
			t.logf("%s; gave up after %d tries", line, tries)
			return out
		case time.Until(deadline) <= backoff:
			t.logf("%s; gave up: no time left within the %s bound", line, fmtDuration(p.total))
			return out
		}
		t.logf("%s; may be transient: try %d of %d, retrying in %s", line, tries, p.attempts, backoff)
		if !sleep(ctx, backoff) {
			return out
		}
		backoff *= 2
		base++
	}
}
