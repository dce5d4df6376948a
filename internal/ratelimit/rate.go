// Package ratelimit keeps token buckets keyed by string (a client's
// address, an account, a bridge or appservice), in the manner of
// Synapse's rc_* settings: each action has a rate and a burst, a request
// takes a token, and a refused one learns how long to wait.
//
// Buckets live in the memory of one hub instance. Memory is bounded: a
// limiter holds at most MaxKeys buckets, drops full ones (a full bucket
// is the same as none) and, under a flood of distinct keys, forgets
// arbitrary ones rather than grow. Keys are hashed into shards, each with
// its own mutex, so concurrent requests rarely wait for each other.
//
// Time comes from a Clock, which tests replace with a FakeClock.
package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a token bucket's refill rate and capacity. The zero Rate (or
// any Rate with PerSecond or Burst at zero) is off: everything passes.
type Rate struct {
	// PerSecond is how many tokens come back per second.
	PerSecond float64
	// Burst is how many requests pass at once from a full bucket.
	Burst int
}

// Off reports whether the rate limits nothing.
func (r Rate) Off() bool { return !(r.PerSecond > 0) || r.Burst <= 0 }

// String writes the rate as ParseRate reads it.
func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s burst " + strconv.Itoa(r.Burst)
}

// maxBurst keeps a typo from turning a limit into none.
const maxBurst = 1_000_000

var units = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute,
	"h": time.Hour, "hour": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour,
}

// ParseRate reads "<count>/<unit> burst <n>" (unit s, min, h or d; e.g.
// "3/s burst 50", "10/min burst 5", "0.17/s burst 3"), or "off" (or "0")
// for no limit.
func ParseRate(s string) (Rate, error) {
	f := strings.Fields(strings.ToLower(s))
	if len(f) == 1 && (f[0] == "off" || f[0] == "0") {
		return Rate{}, nil
	}
	bad := fmt.Errorf("%q is not a rate: write \"<count>/<unit> burst <n>\" (unit s, min, h or d), e.g. \"3/s burst 50\", or \"off\"", s)
	if len(f) != 3 || f[1] != "burst" {
		return Rate{}, bad
	}
	num, unit, ok := strings.Cut(f[0], "/")
	if !ok {
		return Rate{}, bad
	}
	per, ok := units[unit]
	if !ok {
		return Rate{}, bad
	}
	count, err := strconv.ParseFloat(num, 64)
	if err != nil || !(count > 0) || count > 1e9 {
		return Rate{}, fmt.Errorf("%q: the count must be a positive number", s)
	}
	burst, err := strconv.Atoi(f[2])
	if err != nil || burst < 1 || burst > maxBurst {
		return Rate{}, fmt.Errorf("%q: the burst must be a whole number from 1 to %d", s, maxBurst)
	}
	return Rate{PerSecond: count / per.Seconds(), Burst: burst}, nil
}
