package audit

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

// checkFor polls fn until it returns nil, failing the test with fn's last
// error once total has elapsed: tests wait for a condition, never for a
// fixed time.
func checkFor(t testing.TB, total time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", total, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openSQLite opens a fresh SQLite store and returns it with its file.
func openSQLite(t testing.TB) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.db")
	return reopen(t, path), path
}

func reopen(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// tamperDB opens the database file behind the hub's back, as an attacker
// or a careless administrator would, with the append-only triggers
// dropped.
func tamperDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{`DROP TRIGGER IF EXISTS audit_log_no_update`, `DROP TRIGGER IF EXISTS audit_log_no_delete`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return db
}

// testTime is a fixed past instant, so tests do not depend on the clock.
var testTime = time.Date(2025, 11, 3, 8, 30, 0, 0, time.UTC)

// entry is a typical refused invite, i minutes after testTime.
func entry(i int) Entry {
	return Entry{
		Time:      testTime.Add(time.Duration(i) * time.Minute),
		Actor:     fmt.Sprintf("@8100000000%02d:hub.test", i%100),
		Action:    ActionRoomInvite,
		RoomID:    "!ward:hub.test",
		Target:    "@810000000314:hub.test",
		Decision:  Deny,
		Reason:    "EIMIS_INACTIVE_PRACTITIONER",
		RequestID: fmt.Sprintf("req%d", i),
	}
}

// seed records n entries through a trail and closes it.
func seed(t testing.TB, st store.AuditStore, n int) {
	t.Helper()
	tr := New(st, nil, "hub-a")
	defer tr.Close()
	for i := range n {
		if err := tr.Record(context.Background(), entry(i)); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
}

// rows reads the whole stored chain.
func rows(t testing.TB, st Reader) ([]Entry, store.AuditChain) {
	t.Helper()
	var out []Entry
	chain, err := st.ReadAudit(context.Background(), store.AuditQuery{}, func(e Entry) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, chain
}
