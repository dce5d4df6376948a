package ratelimit

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// Backoff locks a key out after repeated failures, longer each time: the
// failed password logins of one account (Synapse's
// rc_login.failed_attempts, with a growing lockout).
//
// Rate{PerSecond, Burst} reads as: the Burst-th failure in a row locks
// the key for 1/PerSecond seconds; every further failure doubles the
// lockout, up to the maximum. A success (Reset) or a
// quiet spell of twice the maximum forgets the failures.
type Backoff struct {
	threshold int
	base, max time.Duration
	forget    int64
	clock     *clockRef
	maxShard  int
	seed      maphash.Seed
	shards    [numShards]strikeShard
}

type strikeShard struct {
	mu sync.Mutex
	m  map[string]strikes
	_  [48]byte
}

type strikes struct {
	fails   int
	last    int64 // Unix ns of the last failure
	until   int64 // locked until, Unix ns
	limited bool  // refused since the lockout began
}

// NewBackoff returns a Backoff (nil, allowing everything, when r is off).
// maxLockout below 1/PerSecond is raised to it.
func NewBackoff(r Rate, maxLockout time.Duration, clock Clock, maxKeys int) *Backoff {
	return newBackoff(r, maxLockout, newClockRef(clock), maxKeys)
}

func newBackoff(r Rate, maxLockout time.Duration, clock *clockRef, maxKeys int) *Backoff {
	if r.Off() {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	base := time.Duration(float64(time.Second) / r.PerSecond)
	maxLockout = max(maxLockout, base)
	b := &Backoff{
		threshold: r.Burst, base: base, max: maxLockout,
		forget: int64(max(2*maxLockout, base*time.Duration(r.Burst))),
		clock:  clock, maxShard: max(1, maxKeys/numShards), seed: maphash.MakeSeed(),
	}
	for i := range b.shards {
		b.shards[i].m = map[string]strikes{}
	}
	return b
}

func (b *Backoff) shard(key string) *strikeShard {
	return &b.shards[maphash.String(b.seed, key)&(numShards-1)]
}

// Check reports whether key is locked out now; it records nothing.
func (b *Backoff) Check(key string) Decision {
	if b == nil {
		return allowed
	}
	key = boundKey(key)
	now := b.clock.nanos()
	sh := b.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.m[key]
	if !ok {
		return allowed
	}
	if now >= s.until {
		if s.limited {
			s.limited = false
			sh.m[key] = s
		}
		return allowed
	}
	d := Decision{RetryAfter: time.Duration(s.until - now), First: !s.limited}
	s.limited = true
	sh.m[key] = s
	return d
}

// Fail records a failure of key and returns the lockout it starts (0
// when none).
func (b *Backoff) Fail(key string) time.Duration {
	if b == nil {
		return 0
	}
	key = boundKey(key)
	now := b.clock.nanos()
	sh := b.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.m[key]
	if !ok {
		if len(sh.m) >= b.maxShard {
			b.evict(sh, now)
		}
		key = strings.Clone(key)
	}
	if now-s.last > b.forget {
		s.fails = 0
	}
	s.fails++
	s.last = now
	var lock time.Duration
	if s.fails >= b.threshold {
		lock = b.base
		for i := b.threshold; i < s.fails && lock < b.max; i++ {
			lock *= 2
		}
		lock = min(lock, b.max)
		s.until = now + int64(lock)
	}
	sh.m[key] = s
	return lock
}

// Reset forgets key's failures (a successful login).
func (b *Backoff) Reset(key string) {
	if b == nil {
		return
	}
	key = boundKey(key)
	sh := b.shard(key)
	sh.mu.Lock()
	delete(sh.m, key)
	sh.mu.Unlock()
}

// evict drops forgotten keys, then arbitrary ones down to three quarters
// (see Limiter.evict).
func (b *Backoff) evict(sh *strikeShard, now int64) {
	for k, s := range sh.m {
		if now >= s.until && now-s.last > b.forget {
			delete(sh.m, k)
		}
	}
	target := b.maxShard * 3 / 4
	for k := range sh.m {
		if len(sh.m) <= target {
			break
		}
		delete(sh.m, k)
	}
}

// Len is the number of keys held.
func (b *Backoff) Len() int {
	if b == nil {
		return 0
	}
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
