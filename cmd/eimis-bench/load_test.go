package main

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock only moves when told to; Sleep moves it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Duration
}

func (c *fakeClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.advance(d)
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	c.mu.Unlock()
}

// An open loop at 10/s against a server that takes 250ms per request, with
// one send in flight at a time: send i is due at 100ms*i but can only
// start when send i-1 finished, at 250ms*i. Its latency must be charged
// from the timetable (250ms + 150ms*i), not from when it left (250ms).
func TestOpenLoopChargesLateStarts(t *testing.T) {
	clk := &fakeClock{}
	stats := newSendStats()
	p := &plan{end: time.Second}
	var seqs []int64
	runOpenLoop(context.Background(), clk, 10, 1, 0, p, func(seq int64, due time.Duration, warmup bool) {
		started := clk.Now()
		clk.advance(250 * time.Millisecond)
		stats.record(due, started, clk.Now(), warmup, "")
		seqs = append(seqs, seq)
	})
	if len(seqs) != 10 {
		t.Fatalf("sent %d messages, want 10 (due 0..900ms)", len(seqs))
	}
	for i, lat := range stats.latency {
		want := 250*time.Millisecond + time.Duration(i)*150*time.Millisecond
		if seqs[i] != int64(i) || lat != want {
			t.Errorf("send %d (seq %d): latency %v, want %v", i, seqs[i], lat, want)
		}
		if wantLag := time.Duration(i) * 150 * time.Millisecond; stats.lag[i] != wantLag {
			t.Errorf("send %d: start lag %v, want %v", i, stats.lag[i], wantLag)
		}
	}
}

// With an instant server the dispatcher sleeps to each slot: sends start
// exactly on time and their latency is zero.
func TestOpenLoopKeepsTimetable(t *testing.T) {
	clk := &fakeClock{}
	var starts []time.Duration
	p := &plan{messages: 5}
	runOpenLoop(context.Background(), clk, 4, 1, 3*time.Second, p, func(seq int64, due time.Duration, warmup bool) {
		if now := clk.Now(); now != due {
			t.Errorf("seq %d started at %v, due %v", seq, now, due)
		}
		starts = append(starts, due)
	})
	want := []time.Duration{3000, 3250, 3500, 3750, 4000}
	if len(starts) != len(want) {
		t.Fatalf("starts = %v", starts)
	}
	for i := range want {
		if starts[i] != want[i]*time.Millisecond {
			t.Errorf("start %d = %v, want %vms", i, starts[i], want[i])
		}
	}
}

func TestClosedLoopTimesFromStart(t *testing.T) {
	clk := &fakeClock{}
	stats := newSendStats()
	p := &plan{messages: 5}
	runClosedLoop(context.Background(), clk, 1, p, func(seq int64, due time.Duration, warmup bool) {
		started := clk.Now()
		clk.advance(30 * time.Millisecond)
		stats.record(due, started, clk.Now(), warmup, "")
	})
	if stats.accepted != 5 {
		t.Fatalf("accepted %d, want 5", stats.accepted)
	}
	for _, lat := range stats.latency {
		if lat != 30*time.Millisecond {
			t.Errorf("latency %v, want 30ms", lat)
		}
	}
}

func TestPlanAdmit(t *testing.T) {
	p := &plan{warmupEnd: 10, end: 20, messages: 3}
	type r struct{ ok, warmup bool }
	steps := []struct {
		at   time.Duration
		want r
	}{
		{0, r{true, true}},
		{9, r{true, true}},
		{10, r{true, false}},
		{11, r{true, false}},
		{12, r{true, false}},
		{13, r{false, false}}, // fourth measured message: count bound
	}
	for _, s := range steps {
		ok, w := p.admit(s.at)
		if (r{ok, w}) != s.want {
			t.Errorf("admit(%d) = %v,%v want %+v", s.at, ok, w, s.want)
		}
	}
	p = &plan{end: 20}
	if ok, _ := p.admit(19); !ok {
		t.Error("admit before end refused")
	}
	if ok, _ := p.admit(20); ok {
		t.Error("admit at end accepted")
	}
}

func TestScheduleOffsetDoesNotDrift(t *testing.T) {
	if got := scheduleOffset(3, 3); got != time.Second {
		t.Errorf("scheduleOffset(3,3) = %v", got)
	}
	if got := scheduleOffset(1000, 3_600_000); got != time.Hour {
		t.Errorf("scheduleOffset(1000, 3.6e6) = %v, want 1h", got)
	}
}

func TestSenderSlot(t *testing.T) {
	counts := make([]int, 3)
	for seq := range int64(30000) {
		s := senderSlot(12345, seq, 3)
		if s != senderSlot(12345, seq, 3) {
			t.Fatal("senderSlot not deterministic")
		}
		counts[s]++
	}
	for i, c := range counts {
		if c < 9000 || c > 11000 {
			t.Errorf("slot %d chosen %d times of 30000: not spread", i, c)
		}
	}
}
