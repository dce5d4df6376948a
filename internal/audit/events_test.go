package audit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/store"
)

func ptr(s string) *string { return &s }

func TestEventEntry(t *testing.T) {
	const alice, bob = "@alice:hub.test", "@bob:hub.test"
	member := func(sender, target, membership string) bus.EventMsg {
		return bus.EventMsg{RoomID: "!r:hub.test", EventID: "$e", Type: "m.room.member", Sender: sender, StateKey: ptr(target), Membership: membership}
	}
	cases := []struct {
		name   string
		m      bus.EventMsg
		action string
		target string
	}{
		{"join", member(alice, alice, "join"), ActionRoomJoin, alice},
		{"invite", member(alice, bob, "invite"), ActionRoomInvite, bob},
		{"leave", member(bob, bob, "leave"), ActionRoomLeave, bob},
		{"kick", member(alice, bob, "leave"), ActionRoomKick, bob},
		{"ban", member(alice, bob, "ban"), ActionRoomBan, bob},
		{"knock", member(bob, bob, "knock"), ActionRoomKnock, bob},
		{"unknown membership", member(bob, bob, "wander"), ActionEventSend, bob},
		{"create", bus.EventMsg{RoomID: "!r:hub.test", EventID: "$e", Type: "m.room.create", Sender: alice, StateKey: ptr("")}, ActionRoomCreate, ""},
		{"redaction", bus.EventMsg{RoomID: "!r:hub.test", EventID: "$e", Type: "m.room.redaction", Sender: alice}, ActionEventRedact, ""},
		{"message", bus.EventMsg{RoomID: "!r:hub.test", EventID: "$e", Type: "m.room.message", Sender: alice}, ActionEventSend, ""},
		{"other state", bus.EventMsg{RoomID: "!r:hub.test", EventID: "$e", Type: "m.room.name", Sender: alice, StateKey: ptr("")}, ActionEventSend, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.m.Data = []byte(`{"content":{"body":"secret diagnosis"}}`)
			e := EventEntry(c.m)
			if e.Action != c.action || e.Target != c.target || e.Actor != c.m.Sender || e.RoomID != c.m.RoomID ||
				e.EventID != "$e" || e.EventType != c.m.Type || e.Decision != Allow || e.Source != SourceStream {
				t.Fatalf("entry %+v, want action %s target %q", e, c.action, c.target)
			}
			if fmt.Sprintf("%+v", e) != fmt.Sprintf("%+v", EventEntry(bus.EventMsg{RoomID: c.m.RoomID, EventID: "$e", Type: c.m.Type,
				Sender: c.m.Sender, StateKey: c.m.StateKey, Membership: c.m.Membership})) {
				t.Fatal("the event's content made its way into the entry")
			}
		})
	}
}

func startBus(t *testing.T) *bus.Bus {
	t.Helper()
	cfg := bus.DefaultConfig(t.TempDir())
	cfg.Name = "audit-test"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("bus: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// events builds n accepted events over several rooms: a creation, joins,
// invites, kicks, messages and redactions.
func events(n int) []bus.EventMsg {
	out := make([]bus.EventMsg, n)
	for i := range out {
		room := fmt.Sprintf("!room%d:hub.test", i%7)
		sender := fmt.Sprintf("@8100000000%02d:hub.test", i%5)
		m := bus.EventMsg{RoomID: room, EventID: fmt.Sprintf("$ev%03d", i), Sender: sender, Pos: int64(i + 1)}
		switch i % 6 {
		case 0:
			m.Type, m.StateKey = "m.room.create", ptr("")
		case 1:
			m.Type, m.StateKey, m.Membership = "m.room.member", ptr(sender), "join"
		case 2:
			m.Type, m.StateKey, m.Membership = "m.room.member", ptr("@810000000090:hub.test"), "invite"
		case 3:
			m.Type, m.StateKey, m.Membership = "m.room.member", ptr("@810000000090:hub.test"), "leave"
		case 4:
			m.Type = "m.room.redaction"
		default:
			m.Type = "m.room.message"
		}
		out[i] = m
	}
	return out
}

// TestConsumeEvents runs two hub instances' trails on one bus and one
// database: every event is recorded exactly once, with the right action,
// into one valid chain.
func TestConsumeEvents(t *testing.T) {
	b := startBus(t)
	st, _ := openSQLite(t)
	msgs := events(120)
	if err := b.PublishEvents(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	trails := []*Trail{New(st, nil, "hub-a"), New(st, nil, "hub-b")}
	done := make(chan error, len(trails))
	for _, tr := range trails {
		defer tr.Close()
		go func() { done <- tr.ConsumeEvents(ctx, b) }()
	}
	checkFor(t, 30*time.Second, func() error {
		got, _ := rows(t, st)
		if len(got) < len(msgs) {
			return fmt.Errorf("%d of %d events recorded", len(got), len(msgs))
		}
		return nil
	})

	// Redelivery after the commit (a lost ack) must not add a row.
	if err := trails[1].recordEvents(ctx, msgs[3:5]); err != nil {
		t.Fatal(err)
	}
	cancel()
	for range trails {
		if err := <-done; err != nil {
			t.Fatalf("ConsumeEvents after cancel: %v", err)
		}
	}

	got, _ := rows(t, st)
	if len(got) != len(msgs) {
		t.Fatalf("%d entries for %d events", len(got), len(msgs))
	}
	byID := map[string]Entry{}
	for _, e := range got {
		if _, dup := byID[e.EventID]; dup {
			t.Fatalf("event %s recorded twice", e.EventID)
		}
		byID[e.EventID] = e
		if e.Instance != "hub-a" && e.Instance != "hub-b" {
			t.Fatalf("instance %q", e.Instance)
		}
	}
	for _, m := range msgs {
		e, ok := byID[m.EventID]
		if want := EventEntry(m); !ok || e.Action != want.Action || e.Target != want.Target || e.Actor != m.Sender || e.RoomID != m.RoomID {
			t.Fatalf("event %s: entry %+v, want action %s", m.EventID, e, want.Action)
		}
	}
	if _, err := Verify(t.Context(), st); err != nil {
		t.Fatal(err)
	}
}

// flakyStore fails the first AppendAudit calls.
type flakyStore struct {
	store.AuditStore
	failures atomic.Int64
	calls    atomic.Int64
}

func (f *flakyStore) AppendAudit(ctx context.Context, es []store.AuditEntry, h store.AuditHashFunc) ([]store.AuditEntry, error) {
	f.calls.Add(1)
	if f.failures.Add(-1) >= 0 {
		return nil, errors.New("database unavailable")
	}
	return f.AuditStore.AppendAudit(ctx, es, h)
}

// TestConsumeEventsRetries: an event whose entry failed to commit is not
// acknowledged, so it comes back and is recorded.
func TestConsumeEventsRetries(t *testing.T) {
	b := startBus(t)
	st, _ := openSQLite(t)
	f := &flakyStore{AuditStore: st}
	f.failures.Store(2)
	tr := New(f, nil, "hub-a")
	defer tr.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tr.ConsumeEvents(ctx, b) }()
	msgs := events(1)
	if err := b.PublishEvents(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, func() error {
		if got, _ := rows(t, st); len(got) != 1 {
			return fmt.Errorf("%d entries", len(got))
		}
		return nil
	})
	if c := f.calls.Load(); c != 3 {
		t.Fatalf("%d attempts, want 3 (two failures, then the commit)", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConsumeEventsBusClosed(t *testing.T) {
	b := startBus(t)
	st, _ := openSQLite(t)
	tr := New(st, nil, "hub-a")
	defer tr.Close()
	done := make(chan error, 1)
	go func() { done <- tr.ConsumeEvents(t.Context(), b) }()
	// Wait until every partition's consumer runs (an event in each is
	// recorded), so the close hits them running rather than starting.
	var msgs []bus.EventMsg
	for i := 0; len(msgs) < bus.EventPartitions; i++ {
		room := fmt.Sprintf("!r%d:hub.test", i)
		if p := bus.RoomPartition(room); p == len(msgs) {
			msgs = append(msgs, bus.EventMsg{RoomID: room, EventID: fmt.Sprintf("$p%d", p), Type: "m.room.message", Sender: "@a:hub.test"})
			i = -1
		}
	}
	if err := b.PublishEvents(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, func() error {
		if got, _ := rows(t, st); len(got) != len(msgs) {
			return fmt.Errorf("%d of %d partitions consumed", len(got), len(msgs))
		}
		return nil
	})
	b.Close()
	if err := <-done; !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("ConsumeEvents after the bus closed: %v, want ErrClosed", err)
	}
}
