package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

var federationTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"FederationTxns", testFederationTxns},
	{"EventsByIDAnyReader", testEventsByIDAnyReader},
	{"PromoteOutlier", testPromoteOutlier},
}

// testPromoteOutlier: an outlier given its place in the DAG is served,
// keeps its negative position and moves neither the extremities nor
// current state; only an outlier can be promoted, once.
func testPromoteOutlier(t *testing.T, s store.Store) {
	ctx := t.Context()
	createRoom(t, s, "!r:hub.example")
	live := ev("!r:hub.example", "$live", "m.room.message", nil, 5)
	out := ev("!r:hub.example", "$old", "m.room.message", nil, 2)
	out.Flags = store.FlagOutlier
	pos := insert(t, s, live, out)
	promote := func(e store.NewEvent) error {
		return s.WriteEvents(ctx, func(tx store.EventTx) error { return tx.PromoteOutlier(ctx, e) })
	}
	p := out
	p.Flags, p.StateBefore, p.StateAfter, p.PrevEvents = 0, 7, 7, []string{"$older"}
	if err := promote(p); err != nil {
		t.Fatal(err)
	}
	got, err := s.EventsByID(ctx, []string{"$old"})
	if err != nil || len(got) != 1 || got[0].Pos != pos[1] || got[0].Pos >= 0 || got[0].StateAfter != 7 {
		t.Fatalf("promoted outlier = %+v, %v; want served at its negative position %d", got, err, pos[1])
	}
	xs, err := s.Extremities(ctx, "!r:hub.example")
	if err != nil || len(xs) != 1 || xs[0].EventID != "$live" {
		t.Errorf("extremities = %v, %v; want [$live]", xs, err)
	}
	if err := promote(p); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second promotion: %v, want ErrNotFound", err)
	}
	lp := live
	lp.Flags = 0
	if err := promote(lp); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("promoting a live event: %v, want ErrNotFound", err)
	}
}

// testFederationTxns: a transaction is recorded once per origin; the
// same ID from another origin is another transaction; pruning forgets.
func testFederationTxns(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.FederationTxn(ctx, "a.example", "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown txn: %v, want ErrNotFound", err)
	}
	first := json.RawMessage(`{"pdus":{"$x":{}}}`)
	if err := s.PutFederationTxn(ctx, "a.example", "t1", first); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFederationTxn(ctx, "a.example", "t1", json.RawMessage(`{"pdus":{}}`)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("replayed txn: %v, want ErrExists", err)
	}
	got, err := s.FederationTxn(ctx, "a.example", "t1")
	if err != nil || string(got) != string(first) {
		t.Fatalf("txn = %s, %v; want the first response", got, err)
	}
	if _, err := s.FederationTxn(ctx, "b.example", "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("same txn ID from another origin: %v, want ErrNotFound", err)
	}
	if err := s.PutFederationTxn(ctx, "b.example", "t1", first); err != nil {
		t.Fatalf("same txn ID from another origin: %v", err)
	}
	if n, err := s.PruneFederationTxns(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("prune of older txns = %d, %v; want 0", n, err)
	}
	if n, err := s.PruneFederationTxns(ctx, time.Now().Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("prune = %d, %v; want 2", n, err)
	}
	if _, err := s.FederationTxn(ctx, "a.example", "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pruned txn: %v, want ErrNotFound", err)
	}
}

// testEventsByIDAnyReader: outside the writer, outliers and rejected
// events are read too (federation serves auth chains), while the
// client-facing EventsByID skips them.
func testEventsByIDAnyReader(t *testing.T, s store.Store) {
	createRoom(t, s, "!r:hub.example")
	out := ev("!r:hub.example", "$outlier", "m.room.member", ptr("@bob:remote.example"), 3)
	out.Flags = store.FlagOutlier
	out.Membership = "join"
	live := ev("!r:hub.example", "$live", "m.room.message", nil, 1)
	insert(t, s, live, out)
	got, err := s.EventsByIDAny(t.Context(), []string{"$outlier", "$live", "$none"})
	if err != nil || len(got) != 2 {
		t.Fatalf("EventsByIDAny = %d events, %v; want 2", len(got), err)
	}
	var flags store.EventFlags
	for _, e := range got {
		flags |= e.Flags
	}
	if flags != store.FlagOutlier {
		t.Errorf("flags = %v, want the outlier's", flags)
	}
	served, err := s.EventsByID(t.Context(), []string{"$outlier", "$live"})
	if err != nil || len(served) != 1 || served[0].EventID != "$live" {
		t.Errorf("EventsByID served %v, %v; want only $live", served, err)
	}
}
