package service

import (
	"slices"
	"sync"
	"time"
)

// latencyWindow keeps the last n Classify latencies of a variant, for the
// live percentiles of CompareVariants.
type latencyWindow struct {
	mu      sync.Mutex
	samples []time.Duration
	next    int
	full    bool
}

func newLatencyWindow(n int) *latencyWindow {
	return &latencyWindow{samples: make([]time.Duration, n)}
}

func (w *latencyWindow) add(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples[w.next] = d
	w.next++
	if w.next == len(w.samples) {
		w.next, w.full = 0, true
	}
}

// percentiles returns the number of samples and the p50, p95 and p99 in
// milliseconds (nearest rank).
func (w *latencyWindow) percentiles() (n int, p50, p95, p99 float64) {
	w.mu.Lock()
	n = w.next
	if w.full {
		n = len(w.samples)
	}
	sorted := slices.Clone(w.samples[:n])
	w.mu.Unlock()
	if n == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(sorted)
	at := func(p float64) float64 {
		i := int(p*float64(n)+0.5) - 1
		i = min(max(i, 0), n-1)
		return float64(sorted[i]) / float64(time.Millisecond)
	}
	return n, at(0.50), at(0.95), at(0.99)
}
