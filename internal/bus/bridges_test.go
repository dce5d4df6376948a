package bus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func publishN(t *testing.T, b *Bus, room string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := b.PublishEvent(t.Context(), EventMsg{RoomID: room, EventID: fmt.Sprintf("$e%d", i), Type: "m.room.message", Pos: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func nextN(t *testing.T, f *BridgeFeed, n int) []*FeedMsg {
	t.Helper()
	var out []*FeedMsg
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		m, err := f.Next(200 * time.Millisecond)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		if m != nil {
			out = append(out, m)
		}
	}
	if len(out) != n {
		t.Fatalf("got %d messages, want %d", len(out), n)
	}
	return out
}

func TestBridgeConsumerName(t *testing.T) {
	a, b := BridgeConsumerName("acme.prod"), BridgeConsumerName("acme_prod")
	if a == b || strings.ContainsAny(a, ".*> ") {
		t.Fatalf("names %q and %q: must differ and be valid consumer names", a, b)
	}
}

// TestBridgeFeedResume: a new bridge starts at the end of the stream; a
// reopened feed starts right after the last acknowledged message, with
// the unacknowledged ones first and in order, whatever the previous feed
// had in flight.
func TestBridgeFeedResume(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	ctx := t.Context()
	publishN(t, b, "!old:hub", 0, 3) // before the bridge existed: never delivered

	f, err := b.OpenBridgeFeed(ctx, "acme", BridgeFeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Resumed || f.AckFloor != 3 {
		t.Fatalf("new feed: resumed %v, ack floor %d", f.Resumed, f.AckFloor)
	}
	publishN(t, b, "!r:hub", 3, 5)
	got := nextN(t, f, 5)
	if got[0].Event.EventID != "$e3" || got[0].Seq != 4 || got[0].Stored.IsZero() {
		t.Fatalf("first message = %+v", got[0])
	}
	// Ack the second (AckAll covers the first too) and wait for it.
	if err := got[1].AckSync(ctx); err != nil {
		t.Fatal(err)
	}
	f.Stop()

	publishN(t, b, "!r:hub", 8, 2)
	f2, err := b.OpenBridgeFeed(ctx, "acme", BridgeFeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Stop()
	if !f2.Resumed || f2.AckFloor != got[1].Seq {
		t.Fatalf("reopened feed: resumed %v, ack floor %d, want %d", f2.Resumed, f2.AckFloor, got[1].Seq)
	}
	again := nextN(t, f2, 5)
	for i, m := range again {
		if want := fmt.Sprintf("$e%d", 5+i); m.Event.EventID != want {
			t.Fatalf("message %d after resume = %s, want %s", i, m.Event.EventID, want)
		}
	}
	if m, err := f2.Next(300 * time.Millisecond); err != nil || m != nil {
		t.Fatalf("extra message after resume: %+v, %v", m, err)
	}
}

// TestBridgeFeedTakeover: opening a feed of the same bridge ends the
// previous one, so two connections never split a bridge's events.
func TestBridgeFeedTakeover(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	f1, err := b.OpenBridgeFeed(t.Context(), "acme", BridgeFeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Stop()
	// Let f1 park a pull request at the server.
	if m, err := f1.Next(100 * time.Millisecond); m != nil || err != nil {
		t.Fatalf("empty feed: %v %v", m, err)
	}
	f2, err := b.OpenBridgeFeed(t.Context(), "acme", BridgeFeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Stop()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, err := f1.Next(50 * time.Millisecond)
		if errors.Is(err, ErrFeedClosed) {
			return nil
		}
		return fmt.Errorf("old feed still open: %v", err)
	})
	publishN(t, b, "!r:hub", 0, 1)
	nextN(t, f2, 1)
}
