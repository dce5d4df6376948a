package gateway_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/ratelimit"
	"github.com/eimis-hub/eimis/internal/store"
)

// bucketLimiter limits directory_search per bridge with a real token
// bucket on a fake clock, and remembers what it was asked.
type bucketLimiter struct {
	l     *ratelimit.Limiter
	mu    sync.Mutex
	asked []string
}

func (b *bucketLimiter) Allow(_ context.Context, br *store.Bridge, typ string) (time.Duration, bool) {
	b.mu.Lock()
	b.asked = append(b.asked, br.ID+" "+typ)
	b.mu.Unlock()
	if typ != "directory_search" {
		return 0, true
	}
	d := b.l.Allow("bridge:" + br.ID)
	return d.RetryAfter, d.OK
}

// TestRateLimitedRequests: past its limit a request is refused with
// EIMIS_RATE_LIMITED and retry_after_ms (inside the error frame's schema),
// the connection stays up, and the request passes again once the bucket
// has refilled.
func TestRateLimitedRequests(t *testing.T) {
	clock := ratelimit.NewFakeClock(time.Date(2026, 11, 2, 7, 0, 0, 0, time.UTC))
	lim := &bucketLimiter{l: ratelimit.NewLimiter(ratelimit.Rate{PerSecond: 0.5, Burst: 2}, clock, 0)}
	e := newEnv(t, func(c *gateway.Config) { c.RateLimit = lim })
	c := e.dial(t)
	c.hello(e.token)
	search := func(id string) frame {
		f, _ := c.request(map[string]any{"type": "directory_search", "id": id, "query": "carol test"})
		return f
	}
	for _, id := range []string{"s1", "s2"} {
		if f := search(id); f.Type != "result" {
			t.Fatalf("%s within the burst: %s", id, f.raw)
		}
	}
	f := search("s3")
	var retry struct {
		RetryAfterMS int64 `json:"retry_after_ms"`
	}
	_ = json.Unmarshal(f.raw, &retry)
	if f.Type != "error" || f.Code != "EIMIS_RATE_LIMITED" || retry.RetryAfterMS != 2000 || f.Message == "" {
		t.Fatalf("over the limit: %s", f.raw)
	}
	// Other requests are not this limit's business.
	var b struct {
		UserID string `json:"user_id"`
	}
	c.mustResult(map[string]any{"type": "bind", "id": "b", "idnat": hubtest.Localpart("alice")}, &b)
	clock.Advance(2 * time.Second)
	if f := search("s4"); f.Type != "result" {
		t.Fatalf("after the refill: %s", f.raw)
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if len(lim.asked) != 5 || lim.asked[0] != "acme-app directory_search" || lim.asked[3] != "acme-app bind" {
		t.Fatalf("limiter asked %v", lim.asked)
	}
}
