package sdk_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/eimis-hub/eimis/bridges/sdk"
)

// TestRateLimitedError: EIMIS_RATE_LIMITED comes back as ErrRateLimited
// with the wait the hub asked for.
func TestRateLimitedError(t *testing.T) {
	hub := startFakeHub()
	defer hub.Close()
	hub.onFrame = func(c *websocket.Conn, f map[string]any) bool {
		if f["type"] != "send" {
			return false
		}
		hub.write(c, map[string]any{"type": "error", "id": f["id"], "code": "EIMIS_RATE_LIMITED",
			"message": "too many requests", "retry_after_ms": 1500})
		return true
	}
	c, _ := run(t, sdk.Config{URL: hub.URL, Token: fakeToken})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.SendText(ctx, "810000000017", "!r:hub.example", "t1", "one")
	var e *sdk.Error
	if !errors.Is(err, sdk.ErrRateLimited) || !errors.As(err, &e) || e.RetryAfter != 1500*time.Millisecond || sdk.Fatal(err) {
		t.Fatalf("SendText = %v (%+v)", err, e)
	}
}
