package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/storetest"
)

func open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestPragmas pins the durability settings: they are easy to lose in a
// DSN edit and nothing else would notice.
func TestPragmas(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	for _, c := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.w, "journal_mode", "wal"},
		{s.w, "synchronous", "2"}, // FULL
		{s.w, "foreign_keys", "1"},
		{s.w, "busy_timeout", fmt.Sprint(busyTimeoutMS)},
		{s.r, "journal_mode", "wal"},
		{s.r, "query_only", "1"},
		{s.r, "busy_timeout", fmt.Sprint(busyTimeoutMS)},
	} {
		var got string
		if err := c.db.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", c.pragma, err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %q, want %q", c.pragma, got, c.want)
		}
	}
}

func TestOpenRejectsMemory(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=memory"} {
		if s, err := Open(t.Context(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded; readers and writer cannot share such a database", p)
		}
	}
}

// TestReopen checks that migrations are not re-applied and data persists.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta(t.Context(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if v, err := s.GetMeta(t.Context(), "k"); err != nil || v != "v" {
		t.Errorf("after reopen GetMeta = %q, %v", v, err)
	}
}

// TestReadersNeverLocked hammers the file with writes while readers run,
// and fails on any error (notably SQLITE_BUSY, "database is locked").
func TestReadersNeverLocked(t *testing.T) {
	s := open(t)
	ctx := t.Context()
	const room = "!r:hub"
	if err := s.WriteEvents(ctx, func(tx store.EventTx) error {
		return tx.CreateRoom(ctx, store.Room{RoomID: room, Version: "10", Creator: "@a:hub"})
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				err := s.WriteEvents(ctx, func(tx store.EventTx) error {
					sk := ""
					_, err := tx.InsertEvent(ctx, store.NewEvent{Event: store.Event{
						EventID: fmt.Sprintf("$%d-%d", w, i), RoomID: room, Type: "m.room.topic", StateKey: &sk,
						Sender: "@a:hub", Depth: int64(i), JSON: []byte(`{}`)}})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				if _, err := s.PutReceipt(ctx, store.Receipt{RoomID: room, UserID: "@a:hub", Type: "m.read", EventID: "$x"}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 6 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				m, err := s.MaxPos(ctx)
				if err == nil {
					_, err = s.RoomEvents(ctx, room, m-50, m, 20, store.Backward)
				}
				if err == nil {
					_, err = s.CurrentState(ctx, room)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestWriteEventsContextCanceled(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.WriteEvents(ctx, func(tx store.EventTx) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("WriteEvents with a canceled context = %v, want context.Canceled", err)
	}
	// The writer must still be usable afterwards.
	if err := s.PutMeta(t.Context(), "k", "v"); err != nil {
		t.Errorf("PutMeta after canceled WriteEvents: %v", err)
	}
}

func BenchmarkWriteEvents(b *testing.B) {
	storetest.BenchmarkWriteEvents(b, open(b))
}
