package main

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Summary condenses latency samples into the numbers the report prints.
//
// Percentiles are exact (sort + nearest rank) rather than histogram-based: a
// run produces at most a few million samples, which sort in well under a
// second, and exact ranks spare us from arguing about bucket error when two
// servers' p99s differ by a few percent.
type Summary struct {
	Count int     `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// percentile returns the nearest-rank p-th percentile of ascending samples:
// the smallest sample such that at least p% of all samples are <= it. Nearest
// rank never interpolates, so every reported value is a latency that was
// actually observed, and p100 is the maximum.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// p*n/100 rather than p/100*n: the former is exact for integral p and
	// n, the latter turns 95% of 100 into 95.00000000000001 and ceil()
	// then picks the wrong rank. The epsilon absorbs what error remains
	// for fractional p such as 99.9.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}

// summarize sorts samples in place and computes their Summary.
func summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	var total float64
	for _, d := range samples {
		total += float64(d)
	}
	return Summary{
		Count: len(samples),
		Min:   ms(samples[0]),
		Mean:  total / float64(len(samples)) / float64(time.Millisecond),
		P50:   ms(percentile(samples, 50)),
		P90:   ms(percentile(samples, 90)),
		P95:   ms(percentile(samples, 95)),
		P99:   ms(percentile(samples, 99)),
		P999:  ms(percentile(samples, 99.9)),
		Max:   ms(samples[len(samples)-1]),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sendStats accumulates the outcome of every send call of one load phase.
// A single mutex is enough: it is held for an append and a few increments,
// orders of magnitude shorter than the HTTP round trip each record follows.
type sendStats struct {
	mu             sync.Mutex
	attempted      int64
	accepted       int64
	failedByStatus map[string]int64
	warmAttempted  int64
	warmAccepted   int64
	latency        []time.Duration
	lag            []time.Duration
	lastDone       time.Duration
}

func newSendStats() *sendStats {
	return &sendStats{failedByStatus: map[string]int64{}}
}

// record books one send. Latency runs from the scheduled time, not the time
// the request actually left: in open-loop mode a send that could only start
// late (because the generator or the connection pool was backed up behind a
// slow server) must be charged for the wait, or the slowest moments of the
// run would be under-sampled ("coordinated omission"). In closed-loop mode
// the two times coincide.
func (s *sendStats) record(scheduled, started, done time.Duration, warmup bool, failure string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if warmup {
		s.warmAttempted++
		if failure == "" {
			s.warmAccepted++
		}
		return
	}
	s.attempted++
	s.lastDone = max(s.lastDone, done)
	if failure != "" {
		s.failedByStatus[failure]++
		return
	}
	s.accepted++
	s.latency = append(s.latency, done-scheduled)
	s.lag = append(s.lag, started-scheduled)
}
