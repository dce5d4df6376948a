package gateway

import (
	"context"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// RateLimiter is the hub's rate limit of bridge requests, per bridge
// (its operator's limits, never the limits of the users it acts for).
// It records its own refusals (counted and audited, once per limited
// episode).
type RateLimiter interface {
	// Allow reports whether bridge b may make one request of frameType
	// now; when not, how long to wait. Frame types it does not limit
	// (typing, read_receipt …) are always allowed.
	Allow(ctx context.Context, b *store.Bridge, frameType string) (retryAfter time.Duration, ok bool)
}

// rateLimit asks the limiter about one request frame.
func (c *conn) rateLimit(ctx context.Context, f Frame) *Error {
	rl := c.g.cfg.RateLimit
	if rl == nil || c.bridge == nil {
		return nil
	}
	retry, ok := rl.Allow(ctx, c.bridge, f.Type)
	if ok {
		return nil
	}
	e := errf(CodeRateLimited, "", "")
	e.RetryAfter = retry
	return e
}
