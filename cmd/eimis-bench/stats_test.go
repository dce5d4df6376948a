package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func millis(vals ...int) []time.Duration {
	out := make([]time.Duration, len(vals))
	for i, v := range vals {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func seqMillis(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	cases := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p0", millis(7), 0, 7 * time.Millisecond},
		{"single p100", millis(7), 100, 7 * time.Millisecond},
		{"1..100 p50", seqMillis(100), 50, 50 * time.Millisecond},
		// The float trap: 95/100*100 is not exactly 95.
		{"1..100 p95", seqMillis(100), 95, 95 * time.Millisecond},
		{"1..100 p99", seqMillis(100), 99, 99 * time.Millisecond},
		{"1..100 p100", seqMillis(100), 100, 100 * time.Millisecond},
		{"1..100 p0 is the minimum", seqMillis(100), 0, 1 * time.Millisecond},
		{"1..1000 p99.9", seqMillis(1000), 99.9, 999 * time.Millisecond},
		{"1..10 p95 rounds up", seqMillis(10), 95, 10 * time.Millisecond},
		{"1..10 p90", seqMillis(10), 90, 9 * time.Millisecond},
		{"1..10 p51", seqMillis(10), 51, 6 * time.Millisecond},
		{"1..3 p50", seqMillis(3), 50, 2 * time.Millisecond},
		{"1..4 p50 does not interpolate", seqMillis(4), 50, 2 * time.Millisecond},
	}
	for _, c := range cases {
		if got := percentile(c.samples, c.p); got != c.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
}

func TestSummarizeUnsortedInput(t *testing.T) {
	s := seqMillis(1000)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	got := summarize(s)
	want := Summary{Count: 1000, Min: 1, Mean: 500.5, P50: 500, P90: 900, P95: 950, P99: 990, P999: 999, Max: 1000}
	if got != want {
		t.Errorf("summarize = %+v\nwant        %+v", got, want)
	}
	if (summarize(nil) != Summary{}) {
		t.Error("summary of no samples should be zero")
	}
}

func TestSendStatsRecord(t *testing.T) {
	s := newSendStats()
	ms := time.Millisecond
	// Due at 100ms, could only leave at 250ms, answered at 500ms: the
	// latency is 400ms, not the 250ms the request itself took.
	s.record(100*ms, 250*ms, 500*ms, false, "")
	s.record(0, 0, 10*ms, false, "503")
	s.record(0, 0, 10*ms, false, "503")
	s.record(0, 0, 10*ms, false, "timeout")
	s.record(0, 0, 900*ms, true, "")    // warmup: not measured
	s.record(0, 0, 900*ms, true, "429") // warmup failure
	if s.attempted != 4 || s.accepted != 1 {
		t.Errorf("attempted/accepted = %d/%d, want 4/1", s.attempted, s.accepted)
	}
	if s.failedByStatus["503"] != 2 || s.failedByStatus["timeout"] != 1 || len(s.failedByStatus) != 2 {
		t.Errorf("failedByStatus = %v", s.failedByStatus)
	}
	if s.warmAttempted != 2 || s.warmAccepted != 1 {
		t.Errorf("warmup attempted/accepted = %d/%d, want 2/1", s.warmAttempted, s.warmAccepted)
	}
	if len(s.latency) != 1 || s.latency[0] != 400*ms || s.lag[0] != 150*ms {
		t.Errorf("latency %v lag %v, want [400ms] [150ms]", s.latency, s.lag)
	}
	if s.lastDone != 500*ms {
		t.Errorf("lastDone = %v, want 500ms (warmup sends do not extend the window)", s.lastDone)
	}
}
