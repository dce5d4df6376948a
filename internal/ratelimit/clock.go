package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// Clock tells the time. Limiters read it on every request.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock is the real time.
var SystemClock Clock = systemClock{}

// FakeClock is a Clock tests move by hand; safe for concurrent use.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock returns a clock standing at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{t: t} }

// Now returns the clock's time.
func (f *FakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

// Advance moves the clock forward by d.
func (f *FakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// clockRef lets a set of limiters share one clock that tests may swap
// while requests are in flight.
type clockRef struct {
	p atomic.Pointer[clockBox]
}

type clockBox struct{ c Clock }

func newClockRef(c Clock) *clockRef {
	if c == nil {
		c = SystemClock
	}
	r := &clockRef{}
	r.p.Store(&clockBox{c})
	return r
}

func (r *clockRef) set(c Clock) {
	if c == nil {
		c = SystemClock
	}
	r.p.Store(&clockBox{c})
}

// nanos is the time in Unix nanoseconds: a clock swapped for another
// keeps the buckets' times comparable.
func (r *clockRef) nanos() int64 { return r.p.Load().c.Now().UnixNano() }
