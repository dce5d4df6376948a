package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConsumeBatch: events arrive in batches, in stream order; a failed
// batch is redelivered whole, later; a restarted consumer resumes after the last
// acked batch; closing the bus ends it with ErrClosed.
func TestConsumeBatch(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	ctx := context.Background()
	var evs []EventMsg
	for i := range 300 {
		evs = append(evs, EventMsg{RoomID: fmt.Sprintf("!r%d:test", i%7), EventID: fmt.Sprintf("$b%03d", i), Pos: int64(i + 1)})
	}
	if err := b.PublishEvents(ctx, evs[:200]); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		got     []string
		batches int
		failed  bool
	)
	handle := func(_ context.Context, ms []EventMsg) error {
		mu.Lock()
		defer mu.Unlock()
		if len(ms) > 64 {
			return fmt.Errorf("batch of %d over the size", len(ms))
		}
		if !failed {
			failed = true
			return errors.New("first batch fails once")
		}
		batches++
		for _, m := range ms {
			got = append(got, m.EventID)
		}
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.ConsumeBatch(cctx, "batch", "", 64, 20*time.Millisecond, handle) }()
	waitConsumerIdle(t, b, "batch", 200)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("after cancel: %v", err)
	}
	// Resume: only the new events.
	if err := b.PublishEvents(ctx, evs[200:]); err != nil {
		t.Fatal(err)
	}
	done2 := make(chan error, 1)
	go func() { done2 <- b.ConsumeBatch(ctx, "batch", "", 64, 20*time.Millisecond, handle) }()
	waitConsumerIdle(t, b, "batch", 300)
	b.Close()
	if err := <-done2; !errors.Is(err, ErrClosed) {
		t.Fatalf("after bus close: %v, want ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 300 {
		t.Fatalf("%d events handled, want 300 exactly once", len(got))
	}
	// Exactly once each; the failed first batch comes back after a backoff,
	// so only the batches that never failed keep the stream's order.
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Fatalf("%s handled twice", id)
		}
		seen[id] = true
	}
	var rest []string
	for _, id := range got {
		if id >= "$b064" {
			rest = append(rest, id)
		}
	}
	for i := 1; i < len(rest); i++ {
		if rest[i] < rest[i-1] {
			t.Fatalf("order lost among batches that never failed: %s after %s", rest[i], rest[i-1])
		}
	}
	if batches >= 300 {
		t.Fatalf("%d batches for 300 events: not batching", batches)
	}
}
