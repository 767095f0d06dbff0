package main

import (
	"slices"
	"sync"
	"time"
)

// samples keeps every latency of a run, exactly: a 10 s run at 1,000/s is
// 10,000 values (80 KB), and even a long saturation run of a few million
// requests fits in tens of megabytes of the load tool's own memory. Exact
// samples need no bucket-resolution caveats, so percentiles are the true
// nearest-rank values.
type samples struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

// Summary is the distribution of a set of durations.
type Summary struct {
	Count int           `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	Max   time.Duration `json:"max_ns"`
}

// summarize sorts d in place and summarizes it.
func summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return Summary{
		Count: len(d),
		Min:   d[0],
		Mean:  sum / time.Duration(len(d)),
		P50:   percentile(d, 50),
		P90:   percentile(d, 90),
		P99:   percentile(d, 99),
		P999:  percentile(d, 99.9),
		Max:   d[len(d)-1],
	}
}

// percentile is the nearest-rank percentile of sorted data: the smallest
// value such that at least p% of the data is less than or equal to it
// (rank ceil(p/100 × n)). p99.9 of 10,000 samples is the 9,990th smallest,
// i.e. the 11th largest; no interpolation, so it is always an observed
// latency.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	// Integer arithmetic on p×1000 avoids float rounding at exact ranks
	// (0.999 × 10000 is 9989.999... in floating point).
	pm := int64(p*1000 + 0.5) // p in thousandths of a percent
	num := pm * int64(n)
	const den = 100 * 1000
	rank := num / den
	if num%den != 0 {
		rank++
	}
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// errorCounts counts failed requests by kind.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (e *errorCounts) add(kind string) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int{}
	}
	e.m[kind]++
	e.mu.Unlock()
}

func (e *errorCounts) snapshot() (map[string]int, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.m))
	total := 0
	for k, v := range e.m {
		out[k] = v
		total += v
	}
	return out, total
}
