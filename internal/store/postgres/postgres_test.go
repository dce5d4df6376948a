package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
	"github.com/eimis-hub/eimis/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestConcurrentOpen starts several "hub processes" (separate pools, so
// separate sessions) on one empty database at once: exactly one applies
// the migrations, the others wait on goose's lock and find them done.
// A few rounds, because an unguarded race is only lost some of the time.
func TestConcurrentOpen(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), testConcurrentOpen)
	}
}

func testConcurrentOpen(t *testing.T) {
	url := pgtest.URL(t)
	const n = 6
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(t.Context(), url)
		})
	}
	close(start)
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			defer s.Close()
		}
		if errs[i] != nil {
			t.Errorf("Open #%d: %v", i, errs[i])
		}
	}
	if t.Failed() {
		return
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var applied, distinct int
	if err := conn.QueryRow(t.Context(),
		`SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied != distinct || applied == 0 {
		t.Errorf("goose_db_version has %d rows for %d versions: a migration ran twice", applied, distinct)
	}
	// All of them work on the one schema, and share one position stream.
	var last int64
	for i, s := range stores {
		p, err := s.PutReceipt(t.Context(), store.Receipt{RoomID: "!r:hub", UserID: "@u:hub", Type: "m.read", EventID: "$e"})
		if err != nil {
			t.Fatalf("store #%d: %v", i, err)
		}
		if p <= last {
			t.Errorf("store #%d got position %d after %d", i, p, last)
		}
		last = p
	}
}

// TestStreamLockAcrossPools checks that two Stores (as two hub processes
// would) serialize their position writers through the advisory lock, not
// merely through the in-process semaphore.
func TestStreamLockAcrossPools(t *testing.T) {
	url := pgtest.URL(t)
	a, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	inside := make(chan struct{})
	release := make(chan struct{})
	// On failure, let a's transaction end before the deferred Closes,
	// which wait for its connection.
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock()
	done := make(chan error, 1)
	go func() {
		done <- a.WriteEvents(t.Context(), func(tx store.EventTx) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	got := make(chan error, 1)
	go func() {
		_, err := b.PutAccountData(t.Context(), store.AccountData{UserID: "@u:hub", Type: "t", Content: []byte(`{}`)})
		got <- err
	}()
	// b must be blocked on the advisory lock held by a's transaction.
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var waiting int
	deadline := time.Now().Add(30 * time.Second)
	for waiting == 0 {
		if time.Now().After(deadline) {
			t.Fatal("PutAccountData never queued on the advisory lock")
		}
		select {
		case err := <-got:
			t.Fatalf("PutAccountData finished (%v) while another store held the stream lock", err)
		default:
		}
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).
			Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	unblock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func BenchmarkWriteEvents(b *testing.B) {
	storetest.BenchmarkWriteEvents(b, open(b))
}
