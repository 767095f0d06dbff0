package testkit

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// DeadlineScaleEnv names the one knob for slow machines: every tier's
// deadline (Deadline) is multiplied by it. Unset, it is 1.
const DeadlineScaleEnv = "TEST_DEADLINE_SCALE"

// Deadline is base multiplied by $TEST_DEADLINE_SCALE (a positive number,
// 1 when unset). Each tier states its deadline once with it (for example
// harness.Deadline, nodeharness.Deadline): a bound on how long the tier
// waits for something that should happen, never a claim about how fast it
// happens, so it is generous (many times what an idle run takes), and a
// machine slower still raises every tier's deadline with one variable.
// An unusable value panics, naming the variable: a deadline silently left
// unscaled would fail later and far from the cause.
func Deadline(base time.Duration) time.Duration {
	s := os.Getenv(DeadlineScaleEnv)
	if s == "" {
		return base
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0) || f > 1000 {
		panic(fmt.Sprintf("%s=%q: want a positive number such as 3 (every test deadline is multiplied by it)", DeadlineScaleEnv, s))
	}
	return time.Duration(float64(base) * f)
}
