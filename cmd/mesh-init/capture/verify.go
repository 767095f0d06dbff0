package capture

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// MismatchError says that the capture rules of one family are not what
// the settings would write: missing altogether, or different.
type MismatchError struct {
	Family Family
	Mode   meshinit.Mode
	// Problems are the differences, one sentence each.
	Problems []string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("the %s capture rules (%s backend) are not the ones the settings write: %s",
		e.Family, e.Mode, strings.Join(e.Problems, "; "))
}

// Verify checks, writing nothing, that the nat tables hold exactly the
// rules Execute would write for c: the families Execute would write (the
// same IPv6 decision), on the backend Execute would use (auto mode: the one
// holding our chains), and no stale copy in the other backend. It is the
// CNI plugin's CHECK. Errors are *MismatchError, or what reading the tables
// failed with.
func Verify(ctx context.Context, c meshinit.CaptureConfig, h *Host) error {
	if err := c.Validate(); err != nil {
		return &meshinit.UsageError{Err: err}
	}
	if err := checkCapabilities(h.ReadFile, c.Mode); err != nil {
		return err
	}
	fams, err := h.families(c, false)
	if err != nil {
		return err
	}
	targets, err := h.targets(ctx, c.Mode, fams, false)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if t.stale {
			return &MismatchError{Family: fams[0], Mode: t.mode, Problems: []string{
				fmt.Sprintf("a second copy of our chains is in the %s backend", t.mode)}}
		}
		for _, f := range fams {
			if p := differences(c, f, t.states[f]); len(p) > 0 {
				return &MismatchError{Family: f, Mode: t.mode, Problems: p}
			}
		}
	}
	return nil
}

// differences lists how current differs from what UpToDate wants.
func differences(c meshinit.CaptureConfig, f Family, current NATState) []string {
	if UpToDate(c, f, current) {
		return nil
	}
	var out []string
	for _, ch := range OwnedChains() {
		if !slices.Contains(current.Chains, ch) {
			out = append(out, "chain "+ch+" is missing")
		}
	}
	for _, j := range wantJumps {
		switch n := count(current.Jumps, j); {
		case n == 0:
			out = append(out, fmt.Sprintf("jump %q is missing", j))
		case n > 1:
			out = append(out, fmt.Sprintf("jump %q is there %d times", j, n))
		}
	}
	for _, j := range current.Jumps {
		if !slices.Contains(wantJumps, j) {
			out = append(out, fmt.Sprintf("unexpected jump %q", j))
		}
	}
	want := map[string][]string{}
	for _, r := range ChainRules(c, f) {
		ch := strings.Fields(r)[1]
		want[ch] = append(want[ch], r)
	}
	for _, ch := range OwnedChains() {
		if slices.Contains(current.Chains, ch) && !slices.Equal(want[ch], current.Owned[ch]) {
			out = append(out, fmt.Sprintf("chain %s holds %d rules that differ from the %d the settings write", ch, len(current.Owned[ch]), len(want[ch])))
		}
	}
	if len(out) == 0 {
		out = append(out, "the rules differ")
	}
	return out
}

func count(l []string, s string) int {
	n := 0
	for _, x := range l {
		if x == s {
			n++
		}
	}
	return n
}
