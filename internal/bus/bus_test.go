package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestEventSubject(t *testing.T) {
	rooms := []string{"!abc:example.org", "!x.y.z:a.b.c", "!ÄÖ*>:host:8448", "!abc:example.org2"}
	seen := map[string]string{}
	for _, r := range rooms {
		s := EventSubject(r)
		if s != EventSubject(r) {
			t.Fatalf("subject for %q not deterministic", r)
		}
		parts := strings.Split(s, ".")
		if len(parts) != 4 || parts[0] != "eimis" || parts[1] != "events" {
			t.Fatalf("subject %q has unexpected shape", s)
		}
		if len(parts[2]) != 2 || parts[2] != fmt.Sprintf("%02d", RoomPartition(r)) {
			t.Fatalf("subject %q: bad partition token", s)
		}
		if RoomPartition(r) < 0 || RoomPartition(r) >= EventPartitions {
			t.Fatalf("partition %d out of range", RoomPartition(r))
		}
		if strings.ContainsAny(parts[3], "*> \t!:") || parts[3] != strings.ToLower(parts[3]) {
			t.Fatalf("room token %q is not NATS-safe lower case", parts[3])
		}
		if prev, dup := seen[s]; dup {
			t.Fatalf("rooms %q and %q share subject %q", prev, r, s)
		}
		seen[s] = r
		back, err := RoomIDFromSubject(s)
		if err != nil || back != r {
			t.Fatalf("RoomIDFromSubject(%q) = %q, %v; want %q", s, back, err, r)
		}
		if !strings.HasPrefix(s, strings.TrimSuffix(PartitionWildcard(RoomPartition(r)), "*")) {
			t.Fatalf("subject %q not under %q", s, PartitionWildcard(RoomPartition(r)))
		}
	}
	// FNV-1a of the empty string is the offset basis 2166136261; pinning it
	// guards against an accidental hash change re-homing every room.
	if got := RoomPartition(""); got != int(uint32(2166136261)%EventPartitions) {
		t.Fatalf("RoomPartition(\"\") = %d", got)
	}
	if SubjectTyping != EphemeralSubject("typing") || !isEphemeralSubject(SubjectTyping) {
		t.Fatalf("typing subject inconsistent")
	}
	for _, bad := range []string{"eimis.events.00.x", "eimis.ephemeral.", "eimis.ephemeral", "eimis.ephemeral.a..b", "other"} {
		if isEphemeralSubject(bad) {
			t.Fatalf("%q accepted as ephemeral", bad)
		}
	}
}

func TestEmbeddedPublishWatchInOrder(t *testing.T) {
	var hookCalls, hookErrs atomic.Int64
	b := startEmbeddedBus(t, func(c *Config) {
		c.OnPublish = func(_ time.Duration, err error) {
			hookCalls.Add(1)
			if err != nil {
				hookErrs.Add(1)
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, done := startWatch(t, ctx, b)

	const rooms, perRoom = 40, 50
	var want []EventMsg
	for i := range perRoom {
		for r := range rooms {
			sk := fmt.Sprintf("@u%d:test", r)
			want = append(want, EventMsg{
				RoomID:     fmt.Sprintf("!room%d:test.org", r),
				EventID:    fmt.Sprintf("$e%d-%d", r, i),
				Type:       "m.room.member",
				Sender:     sk,
				StateKey:   &sk,
				Membership: "join",
				Pos:        int64(len(want) + 1),
				Data:       json.RawMessage(`{"content":{"membership":"join"}}`),
			})
		}
	}
	hookBefore := hookCalls.Load()
	// Mix both publish paths; order must hold across them.
	half := len(want) / 2
	if err := b.PublishEvents(ctx, want[:half]); err != nil {
		t.Fatalf("PublishEvents: %v", err)
	}
	for _, m := range want[half:] {
		if err := b.PublishEvent(ctx, m); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}

	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := len(w.snapshot()); n < len(want) {
			return fmt.Errorf("received %d/%d", n, len(want))
		}
		return nil
	})
	got := w.snapshot()
	if len(got) != len(want) {
		t.Fatalf("received %d events, want %d", len(got), len(want))
	}
	for i := range want {
		g, e := got[i], want[i]
		if g.EventID != e.EventID || g.RoomID != e.RoomID || g.Pos != e.Pos || g.Type != e.Type ||
			g.Sender != e.Sender || g.Membership != e.Membership || g.StateKey == nil || *g.StateKey != *e.StateKey ||
			string(g.Data) != string(e.Data) {
			t.Fatalf("event %d = %+v, want %+v", i, g, e)
		}
	}
	if n := hookCalls.Load() - hookBefore; n != int64(len(want)) {
		t.Fatalf("OnPublish called %d times, want %d", n, len(want))
	}
	if hookErrs.Load() != 0 {
		t.Fatalf("OnPublish saw %d errors", hookErrs.Load())
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("WatchEvents returned %v after cancel", err)
	}
}

func streamMsgs(t *testing.T, b *Bus) uint64 {
	t.Helper()
	info, err := b.stream.Info(context.Background())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

func TestMsgIDDedup(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	ctx := context.Background()
	m := EventMsg{RoomID: "!r:test", EventID: "$same", Type: "m.room.message", Sender: "@a:test", Pos: 1}
	for range 3 {
		if err := b.PublishEvent(ctx, m); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}
	if n := streamMsgs(t, b); n != 1 {
		t.Fatalf("stream holds %d messages after publishing one event 3 times, want 1", n)
	}
	batch := []EventMsg{m, {RoomID: "!r:test", EventID: "$other", Pos: 2}, m, {RoomID: "!r:test", EventID: "$other", Pos: 2}}
	if err := b.PublishEvents(ctx, batch); err != nil {
		t.Fatalf("PublishEvents: %v", err)
	}
	if n := streamMsgs(t, b); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
}

func TestPublishValidation(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	ctx := context.Background()
	if err := b.PublishEvent(ctx, EventMsg{RoomID: "!r:test"}); err == nil {
		t.Fatal("event without ID accepted")
	}
	if err := b.PublishEvent(ctx, EventMsg{RoomID: "!r:test", EventID: "$x", Data: json.RawMessage("{not json")}); err == nil {
		t.Fatal("invalid Data JSON accepted")
	}
	if err := b.PublishEvents(ctx, []EventMsg{{RoomID: "!r:test", EventID: "$ok"}, {EventID: "$noroom"}}); err == nil {
		t.Fatal("batch with invalid event accepted")
	}
}

// consumeRecorder is a Consume handler that records deliveries and fails
// chosen events a given number of times.
type consumeRecorder struct {
	mu        sync.Mutex
	delivered map[string]int
	acked     []string
	failures  map[string]int
}

func newRecorder(failures map[string]int) *consumeRecorder {
	if failures == nil {
		failures = map[string]int{}
	}
	return &consumeRecorder{delivered: map[string]int{}, failures: failures}
}

func (r *consumeRecorder) handle(_ context.Context, m EventMsg) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered[m.EventID]++
	if r.failures[m.EventID] > 0 {
		r.failures[m.EventID]--
		return errors.New("downstream unavailable")
	}
	r.acked = append(r.acked, m.EventID)
	return nil
}

func (r *consumeRecorder) state() (map[string]int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := make(map[string]int, len(r.delivered))
	for k, v := range r.delivered {
		d[k] = v
	}
	return d, append([]string(nil), r.acked...)
}

func waitConsumerIdle(t *testing.T, b *Bus, durable string, wantAckFloor uint64) {
	t.Helper()
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		c, err := b.js.Consumer(context.Background(), StreamEvents, durable)
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream != wantAckFloor {
			return fmt.Errorf("consumer not idle: ack pending %d, pending %d, ack floor %d (want %d)",
				info.NumAckPending, info.NumPending, info.AckFloor.Stream, wantAckFloor)
		}
		return nil
	})
}

func TestConsumeAckRedeliveryResume(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	ctx := context.Background()
	const durable = "audit"

	var first []EventMsg
	for i := range 10 {
		first = append(first, EventMsg{RoomID: fmt.Sprintf("!r%d:test", i%3), EventID: fmt.Sprintf("$a%d", i), Pos: int64(i + 1)})
	}
	if err := b.PublishEvents(ctx, first); err != nil {
		t.Fatal(err)
	}

	// Run 1: $a3 fails twice before succeeding.
	rec := newRecorder(map[string]int{"$a3": 2})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Consume(cctx, durable, "", rec.handle) }()
	waitConsumerIdle(t, b, durable, 10)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume returned %v after cancel", err)
	}
	delivered, acked := rec.state()
	if delivered["$a3"] != 3 {
		t.Fatalf("$a3 delivered %d times, want 3 (two failures + success)", delivered["$a3"])
	}
	if len(acked) != 10 {
		t.Fatalf("acked %v, want all 10 events once", acked)
	}
	for _, m := range first {
		if m.EventID != "$a3" && delivered[m.EventID] != 1 {
			t.Fatalf("%s delivered %d times, want 1", m.EventID, delivered[m.EventID])
		}
	}

	// Events published while no consumer runs must be picked up on resume,
	// and nothing acked before must come back.
	var second []EventMsg
	for i := range 5 {
		second = append(second, EventMsg{RoomID: "!r0:test", EventID: fmt.Sprintf("$b%d", i), Pos: int64(11 + i)})
	}
	if err := b.PublishEvents(ctx, second); err != nil {
		t.Fatal(err)
	}
	rec2 := newRecorder(nil)
	cctx2, cancel2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- b.Consume(cctx2, durable, "", rec2.handle) }()
	waitConsumerIdle(t, b, durable, 15)
	cancel2()
	if err := <-done2; err != nil {
		t.Fatalf("Consume returned %v after cancel", err)
	}
	_, acked2 := rec2.state()
	want := []string{"$b0", "$b1", "$b2", "$b3", "$b4"}
	if strings.Join(acked2, ",") != strings.Join(want, ",") {
		t.Fatalf("resumed consumer handled %v, want %v", acked2, want)
	}
}

func TestConsumeFilterAndTerminal(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	ctx := context.Background()
	room := "!filtered:test"
	var msgs []EventMsg
	for i := range 6 {
		r := room
		if i%2 == 1 {
			r = "!elsewhere:test"
		}
		msgs = append(msgs, EventMsg{RoomID: r, EventID: fmt.Sprintf("$f%d", i)})
	}
	if err := b.PublishEvents(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(cctx, "room-only", EventSubject(room), func(_ context.Context, m EventMsg) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, m.EventID)
			if m.EventID == "$f2" {
				return fmt.Errorf("cannot translate: %w", ErrTerminal)
			}
			return nil
		})
	}()
	c := func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 3 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, c)
	// A terminated message is not pending any more.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		cons, err := b.js.Consumer(ctx, StreamEvents, "room-only")
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("ack pending %d, pending %d", info.NumAckPending, info.NumPending)
		}
		return nil
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "$f0,$f2,$f4" {
		t.Fatalf("filtered consumer saw %v", got)
	}
}

func TestEphemeral(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	got := make(chan string, 10)
	unsub, err := b.SubscribeEphemeral(SubjectTyping, func(d []byte) { got <- string(d) })
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PublishEphemeral(SubjectTyping, []byte(`{"room_id":"!r:t"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d != `{"room_id":"!r:t"}` {
			t.Fatalf("got %q", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ephemeral message not received")
	}
	unsub()
	if err := b.PublishEphemeral(EventSubject("!r:t"), nil); err == nil {
		t.Fatal("publishing on an event subject over core NATS was allowed")
	}
	if _, err := b.SubscribeEphemeral(EventsWildcard, func([]byte) {}); err == nil {
		t.Fatal("subscribing to event subjects as ephemeral was allowed")
	}
}

func TestPingAndClose(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	ctx := context.Background()
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, done := startWatch(t, wctx, b)
	b.Close()
	b.Close() // idempotent
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("WatchEvents after Close returned %v, want ErrClosed", err)
	}
	if err := b.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded after Close")
	}
	if err := b.PublishEvent(ctx, EventMsg{RoomID: "!r:t", EventID: "$x"}); err == nil {
		t.Fatal("publish succeeded after Close")
	}
}

func TestEmbeddedNeedsStoreDir(t *testing.T) {
	if _, err := Start(context.Background(), Config{}, nil); err == nil {
		t.Fatal("embedded start without StoreDir succeeded")
	}
}

// TestEmbeddedRestartKeepsStream checks the file store: events acked before
// a shutdown are still there after starting again on the same directory,
// and de-duplication state survives too.
func TestEmbeddedRestartKeepsStream(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b, err := Start(ctx, DefaultConfig(dir), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PublishEvents(ctx, []EventMsg{{RoomID: "!r:t", EventID: "$1"}, {RoomID: "!r:t", EventID: "$2"}}); err != nil {
		t.Fatal(err)
	}
	b.Close()

	b2, err := Start(ctx, DefaultConfig(dir), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.PublishEvent(ctx, EventMsg{RoomID: "!r:t", EventID: "$2"}); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, b2); n != 2 {
		t.Fatalf("stream holds %d messages after restart, want 2", n)
	}
	info, err := b2.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Storage != jetstream.FileStorage || info.Config.Duplicates != duplicateWindow || info.Config.MaxAge != defaultMaxAge {
		t.Fatalf("unexpected stream config %+v", info.Config)
	}
}

func TestRetryDelay(t *testing.T) {
	if retryDelay(1) != retryBase || retryDelay(2) != 2*retryBase || retryDelay(1000) != retryMax {
		t.Fatalf("retryDelay: %v %v %v", retryDelay(1), retryDelay(2), retryDelay(1000))
	}
}

// TestPublishEventsPartialFailure checks that a batch larger than the
// publish window reports a failure in its middle, still waits for what was
// already in flight, and can then be retried as a whole thanks to
// de-duplication.
func TestPublishEventsPartialFailure(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	ctx := context.Background()
	const n, bad = 3 * publishWindow, 2*publishWindow + 7
	msgs := make([]EventMsg, n)
	for i := range msgs {
		msgs[i] = EventMsg{RoomID: fmt.Sprintf("!r%d:t", i%7), EventID: fmt.Sprintf("$p%d", i)}
	}
	// Larger than the default 1MB max payload, so the publish is refused.
	msgs[bad].Data = json.RawMessage(`"` + strings.Repeat("x", 2<<20) + `"`)
	if err := b.PublishEvents(ctx, msgs); err == nil {
		t.Fatal("oversized event accepted")
	}
	if got := streamMsgs(t, b); got != bad {
		t.Fatalf("stream holds %d messages, want the %d before the failure", got, bad)
	}
	msgs[bad].Data = nil
	if err := b.PublishEvents(ctx, msgs); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := streamMsgs(t, b); got != n {
		t.Fatalf("stream holds %d messages after retry, want %d", got, n)
	}
}
