package ratelimit

import (
	"fmt"
	"hash/maphash"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

var epoch = time.Date(2026, 11, 2, 7, 0, 0, 0, time.UTC)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    Rate
		wantErr string
	}{
		{"3/s burst 50", Rate{3, 50}, ""},
		{"  10/MIN  burst 5 ", Rate{10.0 / 60, 5}, ""},
		{"0.17/s burst 3", Rate{0.17, 3}, ""},
		{"36/h burst 1", Rate{0.01, 1}, ""},
		{"864/d burst 2", Rate{0.01, 2}, ""},
		{"off", Rate{}, ""},
		{"0", Rate{}, ""},
		{"", Rate{}, "not a rate"},
		{"3/s", Rate{}, "not a rate"},
		{"3 burst 5", Rate{}, "not a rate"},
		{"3/week burst 5", Rate{}, "not a rate"},
		{"0/s burst 5", Rate{}, "positive"},
		{"-1/s burst 5", Rate{}, "positive"},
		{"NaN/s burst 5", Rate{}, "positive"},
		{"1/s burst 0", Rate{}, "burst"},
		{"1/s burst 2.5", Rate{}, "burst"},
		{"1/s burst 99999999", Rate{}, "burst"},
		{"1/s bursts 5", Rate{}, "not a rate"},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRate(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRate(%q): %v", tt.in, err)
			continue
		}
		if d := got.PerSecond - tt.want.PerSecond; d > 1e-12 || d < -1e-12 || got.Burst != tt.want.Burst {
			t.Errorf("ParseRate(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		// What String writes, ParseRate reads back.
		back, err := ParseRate(got.String())
		if err != nil || back.Burst != got.Burst || back.Off() != got.Off() {
			t.Errorf("ParseRate(%q.String() = %q) = %+v, %v", tt.in, got.String(), back, err)
		}
	}
}

// step is one request (or clock move) of a scripted scenario.
type step struct {
	advance time.Duration
	key     string
	n       int
	ok      bool
	retry   time.Duration // expected RetryAfter when refused
	first   bool
}

func TestLimiter(t *testing.T) {
	tests := []struct {
		name  string
		rate  Rate
		steps []step
	}{
		{"burst then refused, refill one token", Rate{PerSecond: 1, Burst: 3}, []step{
			{key: "a", ok: true}, {key: "a", ok: true}, {key: "a", ok: true},
			{key: "a", ok: false, retry: time.Second, first: true},
			{key: "a", ok: false, retry: time.Second, first: false},
			{advance: 500 * time.Millisecond, key: "a", ok: false, retry: 500 * time.Millisecond},
			{advance: 500 * time.Millisecond, key: "a", ok: true},
			{key: "a", ok: false, retry: time.Second, first: true}, // a new episode
		}},
		{"keys are independent", Rate{PerSecond: 0.1, Burst: 1}, []step{
			{key: "a", ok: true}, {key: "a", ok: false, retry: 10 * time.Second, first: true},
			{key: "b", ok: true}, {key: "b", ok: false, retry: 10 * time.Second, first: true},
		}},
		{"refill stops at burst", Rate{PerSecond: 10, Burst: 2}, []step{
			{key: "a", ok: true}, {advance: time.Hour, key: "a", ok: true}, {key: "a", ok: true},
			{key: "a", ok: false, retry: 100 * time.Millisecond, first: true},
		}},
		{"n tokens at once, all or none", Rate{PerSecond: 1, Burst: 10}, []step{
			{key: "a", n: 7, ok: true},
			{key: "a", n: 5, ok: false, retry: 2 * time.Second, first: true},
			{key: "a", n: 3, ok: true},
		}},
		{"n above burst waits for a full bucket", Rate{PerSecond: 1, Burst: 4}, []step{
			{key: "a", n: 50, ok: true},
			{key: "a", n: 50, ok: false, retry: 4 * time.Second, first: true},
			{advance: 4 * time.Second, key: "a", n: 50, ok: true},
		}},
		{"slow rate", Rate{PerSecond: 1.0 / 60, Burst: 1}, []step{
			{key: "a", ok: true},
			{advance: 59 * time.Second, key: "a", ok: false, retry: time.Second, first: true},
			{advance: time.Second, key: "a", ok: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := NewFakeClock(epoch)
			l := NewLimiter(tt.rate, clock, 0)
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				d := l.AllowN(s.key, s.n)
				if d.OK != s.ok {
					t.Fatalf("step %d (%s): ok = %v, want %v", i, s.key, d.OK, s.ok)
				}
				if !s.ok && (d.RetryAfter != s.retry || d.First != s.first) {
					t.Fatalf("step %d (%s): retry %v first %v, want %v %v", i, s.key, d.RetryAfter, d.First, s.retry, s.first)
				}
			}
		})
	}
}

func TestOffAllowsEverything(t *testing.T) {
	for _, r := range []Rate{{}, {PerSecond: 0, Burst: 5}, {PerSecond: 5, Burst: 0}} {
		l := NewLimiter(r, nil, 0)
		for range 1000 {
			if !l.Allow("k").OK {
				t.Fatalf("rate %+v refused", r)
			}
		}
	}
	var none *Limits
	if !none.Allow(Message, "k", 1).OK || !none.LoginLocked("k").OK || none.LoginFailed("k") != 0 {
		t.Fatal("nil Limits must allow everything")
	}
	l := New(Config{Rates: map[Action]Rate{Message: {1, 1}}})
	for range 10 {
		if !l.Allow(Join, "k", 1).OK {
			t.Fatal("an action without a rate must not be limited")
		}
	}
}

// A flood of distinct keys never grows a limiter past its bound, and
// keys in the middle of an episode are not the first to go.
func TestLimiterMemoryIsBounded(t *testing.T) {
	clock := NewFakeClock(epoch)
	const maxKeys = 64 * 16
	l := NewLimiter(Rate{PerSecond: 0.001, Burst: 2}, clock, maxKeys)
	for i := range 200_000 {
		l.Allow(fmt.Sprintf("198.51.%d.%d", i/256, i%256))
		if i%10_000 == 0 && l.Len() > maxKeys {
			t.Fatalf("after %d keys the limiter holds %d buckets, bound %d", i+1, l.Len(), maxKeys)
		}
	}
	if n := l.Len(); n > maxKeys || n < maxKeys/2 {
		t.Fatalf("holds %d buckets, want between %d and %d", n, maxKeys/2, maxKeys)
	}
}

// When a shard is full, buckets that have refilled go first; the ones in
// the middle of an episode stay.
func TestEvictionDropsFullBucketsFirst(t *testing.T) {
	clock := NewFakeClock(epoch)
	l := NewLimiter(Rate{PerSecond: 1.0 / 3600, Burst: 1}, clock, numShards*4)
	// Five keys of one shard.
	var keys []string
	for i := 0; len(keys) < 5; i++ {
		k := fmt.Sprint("k", i)
		if maphash.String(l.seed, k)&(numShards-1) == 0 {
			keys = append(keys, k)
		}
	}
	l.Allow(keys[0])
	clock.Advance(time.Hour) // keys[0] is full again
	for _, k := range keys[1:4] {
		l.Allow(k) // drained
	}
	l.Allow(keys[4]) // the shard is full: one must go
	sh := &l.shards[0]
	if _, ok := sh.m[keys[0]]; ok {
		t.Fatal("the full bucket was kept")
	}
	for _, k := range keys[1:] {
		if _, ok := sh.m[k]; !ok {
			t.Fatalf("drained bucket %s was evicted while a full one could go", k)
		}
	}
	if d := l.Allow(keys[1]); d.OK {
		t.Fatal("a drained bucket passed")
	}
}

func TestLongKeysAreHashed(t *testing.T) {
	l := NewLimiter(Rate{PerSecond: 1, Burst: 1}, NewFakeClock(epoch), 0)
	long := strings.Repeat("x", 1<<20)
	if !l.Allow(long).OK || l.Allow(long).OK {
		t.Fatal("a long key must still have its bucket")
	}
	if !l.Allow(long + "y").OK {
		t.Fatal("two long keys must not share a bucket")
	}
	for i := range l.shards {
		for k := range l.shards[i].m {
			if len(k) > maxKeyLen {
				t.Fatalf("stored a %d-byte key", len(k))
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	const base = time.Minute
	clock := NewFakeClock(epoch)
	b := NewBackoff(Rate{PerSecond: 1.0 / 60, Burst: 3}, 5*time.Minute, clock, 0)
	mustLock := func(want time.Duration) {
		t.Helper()
		if got := b.Fail("alice"); got != want {
			t.Fatalf("Fail locked for %v, want %v", got, want)
		}
	}
	// Two failures are tolerated, the third locks for the base, and each
	// failure after a lockout doubles it, up to the maximum.
	mustLock(0)
	mustLock(0)
	if !b.Check("alice").OK {
		t.Fatal("locked before the threshold")
	}
	mustLock(base)
	d := b.Check("alice")
	if d.OK || d.RetryAfter != base || !d.First {
		t.Fatalf("Check during lockout = %+v", d)
	}
	clock.Advance(30 * time.Second)
	if d := b.Check("alice"); d.OK || d.RetryAfter != 30*time.Second || d.First {
		t.Fatalf("second Check during lockout = %+v (must not be First)", d)
	}
	if !b.Check("bob").OK {
		t.Fatal("another account is locked")
	}
	clock.Advance(30 * time.Second)
	if !b.Check("alice").OK {
		t.Fatal("still locked after the lockout")
	}
	mustLock(2 * base)
	clock.Advance(2 * base)
	mustLock(4 * base)
	clock.Advance(4 * base)
	mustLock(5 * time.Minute) // capped
	clock.Advance(5 * time.Minute)
	for range 40 {
		if got := b.Fail("alice"); got != 5*time.Minute {
			t.Fatalf("lockout %v past the cap", got)
		}
	}
	// Success forgets everything.
	b.Reset("alice")
	if !b.Check("alice").OK {
		t.Fatal("locked after Reset")
	}
	mustLock(0)
	// So does a quiet spell of twice the maximum.
	mustLock(0)
	clock.Advance(10*time.Minute + time.Nanosecond)
	mustLock(0)
	mustLock(0)
	mustLock(base)
}

func TestBackoffMemoryIsBounded(t *testing.T) {
	const maxKeys = 64 * 8
	b := NewBackoff(Rate{PerSecond: 1, Burst: 5}, time.Minute, NewFakeClock(epoch), maxKeys)
	for i := range 50_000 {
		b.Fail(fmt.Sprint("user", i))
	}
	if n := b.Len(); n > maxKeys {
		t.Fatalf("holds %d keys, bound %d", n, maxKeys)
	}
}

func TestConcurrentAllowNeverOverspends(t *testing.T) {
	clock := NewFakeClock(epoch)
	l := NewLimiter(Rate{PerSecond: 1, Burst: 100}, clock, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if l.Allow("shared").OK {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ok != 100 {
		t.Fatalf("%d requests passed a bucket of 100 with the clock stopped", ok)
	}
}

func TestOperatorActions(t *testing.T) {
	for a, want := range map[Action]Action{
		Message: OperatorMessage, Join: OperatorMembership, Invite: OperatorMembership,
		Registration: OperatorMembership, LoginAccount: OperatorMembership,
		MediaUpload: OperatorMedia, DirectorySearch: OperatorSearch, OperatorMessage: OperatorMessage,
	} {
		if got := a.Operator(); got != want {
			t.Errorf("%s.Operator() = %s, want %s", a, got, want)
		}
	}
}

func TestSetClockReachesEveryLimit(t *testing.T) {
	l := New(Config{
		Rates:        map[Action]Rate{Message: {PerSecond: 1, Burst: 1}},
		FailedLogins: Rate{PerSecond: 1, Burst: 1}, MaxLockout: time.Hour,
	})
	clock := NewFakeClock(epoch)
	l.SetClock(clock)
	if !l.Allow(Message, "a", 1).OK || l.Allow(Message, "a", 1).OK {
		t.Fatal("burst of one")
	}
	if l.LoginFailed("a") != time.Second || l.LoginLocked("a").OK {
		t.Fatal("lockout of one second expected")
	}
	clock.Advance(time.Second)
	if !l.Allow(Message, "a", 1).OK || !l.LoginLocked("a").OK {
		t.Fatal("the fake clock's second did not refill")
	}
}

func TestClientAddress(t *testing.T) {
	proxies, err := ParseProxies("127.0.0.1, 10.0.0.0/8, ::1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"peer", "192.0.2.7:5555", nil, proxies, "192.0.2.7"},
		{"header ignored from an untrusted peer", "192.0.2.7:5555", []string{"198.51.100.1"}, proxies, "192.0.2.7"},
		{"header ignored without trusted proxies", "127.0.0.1:5555", []string{"198.51.100.1"}, nil, "127.0.0.1"},
		{"trusted proxy", "127.0.0.1:5555", []string{"198.51.100.1"}, proxies, "198.51.100.1"},
		{"spoofed left entries ignored", "127.0.0.1:5555", []string{"6.6.6.6, 198.51.100.1"}, proxies, "198.51.100.1"},
		{"proxy chain", "10.1.1.1:5555", []string{"6.6.6.6, 198.51.100.1, 10.2.2.2"}, proxies, "198.51.100.1"},
		{"several headers", "10.1.1.1:5555", []string{"6.6.6.6", "198.51.100.1, 10.2.2.2"}, proxies, "198.51.100.1"},
		{"garbled hop stops the walk", "127.0.0.1:5555", []string{"198.51.100.1, bogus"}, proxies, "127.0.0.1"},
		{"only proxies", "127.0.0.1:5555", []string{"10.0.0.1"}, proxies, "10.0.0.1"},
		{"no header from a proxy", "127.0.0.1:5555", nil, proxies, "127.0.0.1"},
		{"ipv6 stands for its /64", "[2001:db8:1:2:3:4:5:6]:443", nil, nil, "2001:db8:1:2::/64"},
		{"ipv6 through a proxy", "[::1]:443", []string{"2001:db8:aa:bb::1"}, proxies, "2001:db8:aa:bb::/64"},
		{"v4-mapped", "[::ffff:192.0.2.9]:80", nil, nil, "192.0.2.9"},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		for _, h := range tt.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		if got := ClientAddress(r, tt.trusted); got != tt.want {
			t.Errorf("%s: ClientAddress = %q, want %q", tt.name, got, tt.want)
		}
	}
	if _, err := ParseProxies("10.0.0.0/33"); err == nil {
		t.Error("a bad prefix must be refused")
	}
	if _, err := ParseProxies("proxy.local"); err == nil {
		t.Error("a host name must be refused")
	}
}
