package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

type fakePub struct {
	mu   sync.Mutex
	got  []string
	fail bool
}

func (f *fakePub) PublishEvents(_ context.Context, msgs []bus.EventMsg) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("nats down")
	}
	for _, m := range msgs {
		f.got = append(f.got, m.EventID)
	}
	return nil
}

func (f *fakePub) published() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func setup(t *testing.T, n int) (store.Store, []store.Event) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var evs []store.Event
	err = st.WriteEvents(ctx, func(tx store.EventTx) error {
		if err := tx.CreateRoom(ctx, store.Room{RoomID: "!r:x", Version: "11", Creator: "@a:x"}); err != nil {
			return err
		}
		for i := range n {
			e := store.Event{EventID: fmt.Sprintf("$%d", i), RoomID: "!r:x", Type: "m.room.message", Sender: "@a:x", Depth: int64(i + 1), JSON: json.RawMessage(`{}`)}
			pos, err := tx.InsertEvent(ctx, store.NewEvent{Event: e})
			if err != nil {
				return err
			}
			e.Pos = pos
			evs = append(evs, e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, evs
}

func pending(t *testing.T, st store.Store) int {
	out, err := st.PendingOutbox(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(out)
}

func TestSweepRetainCleanup(t *testing.T) {
	st, _ := setup(t, 2500) // more than one sweep page
	pub := &fakePub{}
	r := New(st, pub, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Hour)
	ctx := context.Background()
	r.sweep(ctx, false)
	if got := len(pub.published()); got != 2500 {
		t.Fatalf("startup sweep published %d, want 2500", got)
	}
	// Published rows stay until the retention has passed …
	r.cleanup(ctx, time.Now().Add(-time.Hour))
	if n := pending(t, st); n != 2500 {
		t.Fatalf("%d rows left, want all 2500 retained", n)
	}
	// … and a periodic sweep does not publish them again.
	r.sweep(ctx, true)
	if got := len(pub.published()); got != 2500 {
		t.Fatalf("periodic sweep re-published retained rows: %d", got)
	}
	r.cleanup(ctx, time.Now().Add(time.Second))
	if n := pending(t, st); n != 0 {
		t.Fatalf("%d rows left after cleanup", n)
	}
}

func TestPublishFailureRetries(t *testing.T) {
	st, evs := setup(t, 10)
	pub := &fakePub{fail: true}
	r := New(st, pub, slog.New(slog.NewTextHandler(io.Discard, nil)), 0)
	ctx := context.Background()
	if r.publish(ctx, evs) {
		t.Fatal("publish reported success while NATS is down")
	}
	if !r.dirty {
		t.Fatal("a failed publish must schedule a sweep")
	}
	r.cleanup(ctx, time.Now().Add(time.Second))
	if n := pending(t, st); n != 10 {
		t.Fatalf("rows deleted although never published: %d left", n)
	}
	pub.fail = false
	r.sweep(ctx, true)
	r.cleanup(ctx, time.Now().Add(time.Second))
	if got := pub.published(); len(got) != 10 || got[0] != "$0" || got[9] != "$9" {
		t.Fatalf("after recovery published %v", got)
	}
	if n := pending(t, st); n != 0 {
		t.Fatalf("%d rows left", n)
	}
}
