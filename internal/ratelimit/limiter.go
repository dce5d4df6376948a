package ratelimit

import (
	"crypto/sha256"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"time"
)

// numShards spreads keys over independent locks; a power of two.
const numShards = 64

// DefaultMaxKeys bounds the buckets one limiter holds: about 6 MB at
// most, whatever the number of distinct addresses or names thrown at it.
const DefaultMaxKeys = 64 * 1024

// maxKeyLen bounds a stored key: longer keys (a 1 MB "username") are
// stored as their SHA-256, so a key costs the same whatever its length.
const maxKeyLen = 128

// Decision is the answer for one request.
type Decision struct {
	// OK: the request may go ahead.
	OK bool
	// RetryAfter is, when refused, how long until the same request would
	// pass.
	RetryAfter time.Duration
	// First marks the first refusal of a key since it was last allowed:
	// the start of a limited episode. Callers record that one refusal,
	// so a script hammering a limit does not flood the audit trail.
	First bool
}

var allowed = Decision{OK: true}

// Limiter is a set of token buckets with one rate, keyed by string. A
// nil or Off limiter allows everything.
type Limiter struct {
	rate     Rate
	burst    float64
	perNano  float64
	clock    *clockRef
	maxShard int
	seed     maphash.Seed
	shards   [numShards]shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]bucket
	_  [48]byte // one cache line per shard
}

type bucket struct {
	tokens  float64
	at      int64 // Unix ns of the last refill
	limited bool  // refused since last allowed
}

// NewLimiter returns a limiter for r. clock nil means the real time;
// maxKeys <= 0 means DefaultMaxKeys.
func NewLimiter(r Rate, clock Clock, maxKeys int) *Limiter {
	return newLimiter(r, newClockRef(clock), maxKeys)
}

func newLimiter(r Rate, clock *clockRef, maxKeys int) *Limiter {
	if r.Off() {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	l := &Limiter{
		rate: r, burst: float64(r.Burst), perNano: r.PerSecond / 1e9, clock: clock,
		maxShard: max(1, maxKeys/numShards), seed: maphash.MakeSeed(),
	}
	for i := range l.shards {
		l.shards[i].m = map[string]bucket{}
	}
	return l
}

// Rate is the limiter's rate (the zero Rate for a nil limiter).
func (l *Limiter) Rate() Rate {
	if l == nil {
		return Rate{}
	}
	return l.rate
}

// Allow takes one token from key's bucket.
func (l *Limiter) Allow(key string) Decision { return l.AllowN(key, 1) }

// AllowN takes n tokens at once (an invite of n people), all or none. n
// is capped at the burst, so a request larger than the bucket passes
// when the bucket is full rather than never.
func (l *Limiter) AllowN(key string, n int) Decision {
	if l == nil {
		return allowed
	}
	need := float64(min(max(n, 1), l.rate.Burst))
	key = boundKey(key)
	now := l.clock.nanos()
	sh := &l.shards[maphash.String(l.seed, key)&(numShards-1)]
	sh.mu.Lock()
	b, ok := sh.m[key]
	if ok {
		b.tokens = l.refill(b, now)
	} else {
		if len(sh.m) >= l.maxShard {
			l.evict(sh, now)
		}
		// The map keeps the key: a copy, so it never pins a request's
		// memory.
		key = strings.Clone(key)
		b.tokens = l.burst
	}
	b.at = max(b.at, now)
	d := allowed
	if b.tokens >= need {
		b.tokens -= need
		b.limited = false
	} else {
		d = Decision{RetryAfter: time.Duration(math.Ceil((need - b.tokens) / l.perNano)), First: !b.limited}
		b.limited = true
	}
	sh.m[key] = b
	sh.mu.Unlock()
	return d
}

// refill is b's token count at now (a clock going back refills nothing).
func (l *Limiter) refill(b bucket, now int64) float64 {
	if now <= b.at {
		return b.tokens
	}
	return min(l.burst, b.tokens+float64(now-b.at)*l.perNano)
}

// evict makes room in a full shard: full buckets go first (forgetting
// them changes nothing), then arbitrary ones down to three quarters, so
// a flood of new keys costs a sweep per quarter shard, not per request.
// A forgotten bucket starts full again: under such a flood the limit on
// one key may loosen, memory never grows.
func (l *Limiter) evict(sh *shard, now int64) {
	for k, b := range sh.m {
		if l.refill(b, now) >= l.burst {
			delete(sh.m, k)
		}
	}
	target := l.maxShard * 3 / 4
	for k := range sh.m {
		if len(sh.m) <= target {
			break
		}
		delete(sh.m, k)
	}
}

// Len is the number of buckets held.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func boundKey(key string) string {
	if len(key) <= maxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "#" + string(sum[:16])
}
