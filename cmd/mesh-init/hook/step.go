package hook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// step is one bounded piece of a hook, such as "nacos offline": every
// request, retry, pause and read-back in it shares one budget. The budget
// is not split evenly across tries: a try may use everything that is left,
// so a registry that answers in 2s within a 5s budget is waited for. Only
// when another equivalent server has not been tried yet does a try leave
// that server a share (see perTry).
type step struct {
	t    *tool
	what string
	ctx  context.Context
	// budget is the whole step's bound; deadline is when it ends.
	budget   time.Duration
	deadline time.Time
	// requests counts every HTTP request the step sent; last is the last
	// one and its answer, for the summary line.
	requests int
	last     string
}

// newStep starts a step bounded by budget on t's clock. ctx carries the
// signals; the returned stop releases the budget's timer.
func (t *tool) newStep(ctx context.Context, what string, budget time.Duration) (*step, func()) {
	ctx, cancel := t.clock.WithTimeout(ctx, budget)
	return &step{t: t, what: what, ctx: ctx, budget: budget, deadline: t.clock.Now().Add(budget)}, cancel
}

// left is the time left of the budget.
func (s *step) left() time.Duration { return s.deadline.Sub(s.t.clock.Now()) }

// interrupted reports a signal (as opposed to the budget running out).
func (s *step) interrupted() bool { return errors.Is(s.ctx.Err(), context.Canceled) }

// call is one logical HTTP request of a step.
type call struct {
	method string
	// bases are equivalent servers: a transient failure moves to the next
	// one, and a notHere answer does too, without a pause.
	bases  []string
	path   string
	header http.Header
	body   string
	// judge reads an answer; nil is judgeStatus.
	judge func(a answer) verdict
	// attempts bounds the tries on transient failures (default 3).
	attempts int
	// keep is time left for what the step does after this call (such as
	// its read-back): a try does not use it.
	keep time.Duration
	// perTry caps one try (0: no cap but the budget).
	perTry time.Duration
	// quiet leaves accepted answers off the log (polls).
	quiet bool
}

// result is how a call ended.
type result struct {
	v    verdict
	a    answer
	base string // the server of the last answer
	// why is the reason on the log line for a rejected answer.
	why string
}

// backoffStart is the first pause between tries; it doubles after each.
const backoffStart = 200 * time.Millisecond

// perTry is the bound of one try: what is left of the budget, less what
// the step keeps for later, less a share for servers not tried yet (half
// of what is left at most, else the larger of 1s and a quarter of the
// budget), so a hanging first server cannot starve a healthy second one.
func (s *step) perTry(c call, untried int) time.Duration {
	left := s.left() - c.keep
	if untried > 0 {
		left -= min(left/2, max(time.Second, s.budget/4))
	}
	if c.perTry > 0 {
		left = min(left, c.perTry)
	}
	return left
}

// do runs c within the step, one log line per request.
func (s *step) do(c call) result {
	if c.attempts == 0 {
		c.attempts = 3
	}
	judge := c.judge
	if judge == nil {
		judge = func(a answer) verdict { return judgeStatus(a.status) }
	}
	var (
		i, tries int
		backoff  = backoffStart
		notHeres = map[string]bool{}
		tried    = map[string]bool{}
		r        result
	)
	for {
		base := c.bases[i%len(c.bases)]
		if notHeres[base] {
			i++
			continue
		}
		tried[base] = true
		untried := 0
		for _, b := range c.bases {
			if !tried[b] && !notHeres[b] {
				untried++
			}
		}
		per := s.perTry(c, untried)
		if per <= 0 || s.ctx.Err() != nil {
			if r.a == (answer{}) {
				r = result{v: transient, a: answer{err: context.DeadlineExceeded}, base: base}
				s.last = fmt.Sprintf("%s %s not sent: no time left within the %s bound", c.method, meshinit.RedactURL(base+c.path), fmtDuration(s.budget))
				s.t.logf("%s %s", s.what, s.last)
			}
			r.v = transient
			return r
		}
		target := base + c.path
		a := s.t.exchange(s.ctx, per, c.method, target, c.header, c.body)
		s.requests++
		s.last = fmt.Sprintf("%s %s -> %s", c.method, meshinit.RedactURL(target), a)
		line := s.what + " " + s.last
		r = result{a: a, base: base}
		switch {
		case a.stalled:
			// The request arrived; whether it took effect is for the
			// read-back to say. Another try is harmless (every call here
			// is idempotent).
			r.v = transient
		case a.err == nil:
			r.v = judge(a)
		default:
			if r.why = permanentError(a.err); r.why != "" {
				r.v = rejected
			} else {
				r.v = transient
			}
		}
		switch r.v {
		case accepted:
			if !c.quiet {
				s.t.logf("%s", line)
			}
			return r
		case rejected:
			switch {
			case a.isRedirect():
				r.why = "redirects are not followed; a registry call must be answered by the registry itself"
				s.last += "; " + r.why
			case r.why == "":
				r.why = "another try would get the same answer"
			}
			s.t.logf("%s; not retried: %s", line, r.why)
			return r
		case notHere:
			notHeres[base] = true
			if len(notHeres) == len(c.bases) {
				s.t.logf("%s; no other server to ask", line)
				return r
			}
			s.t.logf("%s; asking the next server", line)
			i++
			continue
		}
		tries++
		switch {
		case s.interrupted():
			s.t.logf("%s; interrupted", line)
			return r
		case s.ctx.Err() != nil:
			s.t.logf("%s; gave up: the %s bound is reached", line, fmtDuration(s.budget))
			return r
		case tries >= c.attempts:
			s.t.logf("%s; gave up after %d tries", line, tries)
			return r
		case s.left()-c.keep <= backoff:
			s.t.logf("%s; gave up: no time left within the %s bound", line, fmtDuration(s.budget))
			return r
		}
		s.t.logf("%s; may be transient: try %d of %d, retrying in %s", line, tries, c.attempts, backoff)
		if !s.t.clock.Sleep(s.ctx, backoff) {
			return r
		}
		backoff *= 2
		i++
	}
}

// poll asks until check reports done (true), the budget is spent, or the
// call fails for good. It pauses between reads, starting at 200ms and
// doubling up to 1s: a registry's write may take a moment to show (Nacos
// applies an override through Raft, Eureka replicates to peers).
func (s *step) poll(c call, check func(a answer) (done bool, state string)) (bool, string, result) {
	pause := backoffStart
	var state string
	for {
		r := s.do(c)
		if r.v != accepted {
			return false, state, r
		}
		done, st := check(r.a)
		state = st
		if done {
			return true, state, r
		}
		if s.left() <= pause || !s.t.clock.Sleep(s.ctx, pause) {
			return false, state, r
		}
		pause = min(2*pause, time.Second)
	}
}

// send runs one request under a fixed bound with its own tries: the
// proxy's drain and quit calls, which are not registry steps.
func (t *tool) send(ctx context.Context, what string, total, perTry time.Duration, attempts int, method, target string) (bool, string) {
	s, stop := t.newStep(ctx, what, total)
	defer stop()
	r := s.do(call{method: method, bases: []string{target}, attempts: attempts, perTry: perTry})
	return r.v == accepted, s.last
}

// oneOf is a small helper for judges: the body, trimmed, is one of want.
func oneOf(body string, want ...string) bool {
	return slices.Contains(want, strings.TrimSpace(body))
}
