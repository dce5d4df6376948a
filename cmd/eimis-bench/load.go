package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// clock abstracts time so the scheduler's accounting can be tested with a
// fake clock. Times are offsets from the start of the program, taken from
// the monotonic clock so wall-clock steps (NTP) cannot distort latencies.
type clock interface {
	Now() time.Duration
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{ epoch time.Time }

func (c realClock) Now() time.Duration { return time.Since(c.epoch) }

func (c realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// plan decides which sends happen and which of them are warmup. Both load
// models ask it about every send, keyed by the send's (scheduled) time.
type plan struct {
	warmupEnd time.Duration
	end       time.Duration // 0: no time bound
	messages  int64         // 0: no count bound
	measured  atomic.Int64
}

func (p *plan) admit(at time.Duration) (ok, warmup bool) {
	if at < p.warmupEnd {
		return true, true
	}
	if p.end > 0 && at >= p.end {
		return false, false
	}
	if p.messages > 0 && p.measured.Add(1) > p.messages {
		return false, false
	}
	return true, false
}

// sendFunc performs send number seq that was due at scheduled.
type sendFunc func(seq int64, scheduled time.Duration, warmup bool)

// scheduleOffset is when send i is due after the start of an open-loop run.
// It is computed from i rather than accumulated, so rounding never drifts the
// timetable however long the run.
func scheduleOffset(rate float64, i int64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / rate)
}

// runOpenLoop issues sends on a fixed timetable, independent of how fast the
// server answers: that is how real users behave (they do not wait for each
// other's messages to be acknowledged), and it is the only way a slow server
// shows up as latency instead of as a politely reduced offered load.
//
// If maxInflight sends are outstanding the next one waits, and so starts
// late; its latency is still measured from its slot in the timetable (see
// sendStats.record), so the wait is charged to the run, not hidden. When the
// dispatcher falls behind it fires the overdue sends back to back to catch
// up; it never sends early.
func runOpenLoop(ctx context.Context, clk clock, rate float64, maxInflight int, start time.Duration, p *plan, send sendFunc) {
	sem := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := int64(0); ; i++ {
		due := start + scheduleOffset(rate, i)
		ok, warmup := p.admit(due)
		if !ok {
			return
		}
		// Capacity first, then the timetable: waiting on both in this
		// order yields the same start time (the later of the two) and
		// keeps the dispatcher from holding a slot while it sleeps.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if d := due - clk.Now(); d > 0 {
			if clk.Sleep(ctx, d) != nil {
				<-sem
				return
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			send(i, due, warmup)
		}()
	}
}

// runClosedLoop runs concurrency senders that each send again as soon as
// their previous send returns. It measures the throughput the server
// sustains at that concurrency; the "scheduled" time of each send is simply
// when it started.
func runClosedLoop(ctx context.Context, clk clock, concurrency int, p *plan, send sendFunc) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				now := clk.Now()
				ok, warmup := p.admit(now)
				if !ok {
					return
				}
				send(next.Add(1)-1, now, warmup)
			}
		})
	}
	wg.Wait()
}

// senderSlot picks which member of the room sends message seq. A hash of
// (seed, seq) rather than a shared RNG: senders run on many goroutines and a
// locked RNG would serialise them, while the hash stays reproducible for a
// given --seed. The mixer is the splitmix64 finaliser.
func senderSlot(seed uint64, seq int64, members int) int32 {
	x := seed ^ uint64(seq)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return int32(x % uint64(members))
}
