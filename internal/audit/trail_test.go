package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// gatedStore holds AppendAudit calls until released and counts the
// entries of each call.
type gatedStore struct {
	store.AuditStore
	gate    chan struct{} // each AppendAudit waits for one value, or for close
	entered chan int      // receives each call's entry count on entry
	mu      sync.Mutex
	calls   []int
	fail    error
}

func (g *gatedStore) AppendAudit(ctx context.Context, es []store.AuditEntry, h store.AuditHashFunc) ([]store.AuditEntry, error) {
	g.entered <- len(es)
	<-g.gate
	g.mu.Lock()
	g.calls = append(g.calls, len(es))
	fail := g.fail
	g.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	return g.AuditStore.AppendAudit(ctx, es, h)
}

// TestGroupCommit: entries recorded while a transaction runs share the
// next one.
func TestGroupCommit(t *testing.T) {
	st, _ := openSQLite(t)
	g := &gatedStore{AuditStore: st, gate: make(chan struct{}), entered: make(chan int, 10)}
	tr := New(g, nil, "hub-a")
	defer tr.Close()

	const n = 50
	errs := make(chan error, n)
	go func() { errs <- tr.Record(context.Background(), entry(0)) }()
	if got := <-g.entered; got != 1 {
		t.Fatalf("first transaction has %d entries, want 1", got)
	}
	// While it is held, the others queue up.
	for i := 1; i < n; i++ {
		go func() { errs <- tr.Record(context.Background(), entry(i)) }()
	}
	checkFor(t, 10*time.Second, func() error {
		if q := len(tr.queue); q != n-1 {
			return fmt.Errorf("%d entries queued, want %d", q, n-1)
		}
		return nil
	})
	close(g.gate)
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	g.mu.Lock()
	calls := fmt.Sprint(g.calls)
	g.mu.Unlock()
	if calls != fmt.Sprint([]int{1, n - 1}) {
		t.Fatalf("transactions of %s entries, want [1 %d]: one for everything that queued meanwhile", calls, n-1)
	}
	got, _ := rows(t, st)
	if len(got) != n {
		t.Fatalf("%d entries stored, want %d", len(got), n)
	}
	if _, err := Verify(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

func TestRecordFillsDefaults(t *testing.T) {
	st, _ := openSQLite(t)
	tr := New(st, nil, "hub-a")
	defer tr.Close()
	before := time.Now().Truncate(time.Millisecond)
	if err := tr.Record(t.Context(), Entry{Actor: "@a:hub.test", Action: ActionLogout, Decision: Allow}); err != nil {
		t.Fatal(err)
	}
	own := entry(1)
	own.Instance = "worker-7"
	if err := tr.Record(t.Context(), own); err != nil {
		t.Fatal(err)
	}
	got, _ := rows(t, st)
	if len(got) != 2 {
		t.Fatalf("%d entries", len(got))
	}
	if got[0].Instance != "hub-a" || got[0].Time.Before(before) || got[0].Time.After(time.Now()) {
		t.Fatalf("defaults not filled: instance %q, time %v", got[0].Instance, got[0].Time)
	}
	if got[1].Instance != "worker-7" || !got[1].Time.Equal(own.Time) {
		t.Fatalf("given values overridden: instance %q, time %v", got[1].Instance, got[1].Time)
	}
}

func TestRecordErrors(t *testing.T) {
	st, _ := openSQLite(t)
	boom := errors.New("disk on fire")
	g := &gatedStore{AuditStore: st, gate: make(chan struct{}), entered: make(chan int, 10), fail: boom}
	close(g.gate)
	tr := New(g, nil, "hub-a")

	if err := tr.Record(t.Context(), Entry{Action: ActionLogin, Decision: "yes"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid entry: %v", err)
	}
	if err := tr.Record(t.Context(), Entry{Action: ActionAuditPurge, Decision: Allow, Reason: "deleted=9"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a purge entry recorded outside Purge: %v", err)
	}
	if err := tr.Record(t.Context(), entry(0)); !errors.Is(err, boom) {
		t.Fatalf("store failure: %v, want it passed on", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := tr.Record(ctx, entry(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	tr.Close()
	tr.Close() // twice is fine
	if err := tr.Record(t.Context(), entry(2)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	if got, _ := rows(t, st); len(got) != 0 {
		t.Fatalf("%d entries stored, want none", len(got))
	}
}

// TestCloseFlushes: every Record that did not fail is committed by the
// time Close returns, however it raced with Close.
func TestCloseFlushes(t *testing.T) {
	st, _ := openSQLite(t)
	tr := New(st, nil, "hub-a")
	var ok, closed atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			switch err := tr.Record(context.Background(), entry(i)); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrClosed):
				closed.Add(1)
			default:
				t.Errorf("Record: %v", err)
			}
		})
		if i == 100 {
			go tr.Close()
		}
	}
	wg.Wait()
	tr.Close()
	got, _ := rows(t, st)
	if int64(len(got)) != ok.Load() || ok.Load()+closed.Load() != 200 {
		t.Fatalf("%d stored, %d acknowledged, %d refused as closed", len(got), ok.Load(), closed.Load())
	}
	if _, err := Verify(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentRecordOneChain: many goroutines through one trail, and
// two trails (two hub instances) on one database, still make one chain.
func TestConcurrentRecordOneChain(t *testing.T) {
	st, _ := openSQLite(t)
	a, b := New(st, nil, "hub-a"), New(st, nil, "hub-b")
	var wg sync.WaitGroup
	for i := range 300 {
		tr := a
		if i%3 == 0 {
			tr = b
		}
		wg.Go(func() {
			if err := tr.Record(context.Background(), entry(i)); err != nil {
				t.Errorf("Record: %v", err)
			}
		})
	}
	wg.Wait()
	a.Close()
	b.Close()
	res, err := Verify(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Checked != 300 || res.FirstSeq != 1 || res.LastSeq != 300 {
		t.Fatalf("verify: %+v", res)
	}
}

// BenchmarkRecord measures Record from many goroutines at once on SQLite
// (synchronous=FULL, so every group commit is an fsync), the way HTTP
// handlers call it.
func BenchmarkRecord(b *testing.B) {
	st, _ := openSQLite(b)
	tr := New(st, nil, "bench")
	defer tr.Close()
	var i atomic.Int64
	b.SetParallelism(16) // 16 × GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := tr.Record(context.Background(), entry(int(i.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkRecordSerial is one caller at a time: every entry pays a whole
// transaction, the cost group commit saves under concurrency.
func BenchmarkRecordSerial(b *testing.B) {
	st, _ := openSQLite(b)
	tr := New(st, nil, "bench")
	defer tr.Close()
	i := 0
	for b.Loop() {
		i++
		if err := tr.Record(context.Background(), entry(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
