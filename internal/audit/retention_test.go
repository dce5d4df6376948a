package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPurgeKeepsChainVerifiable(t *testing.T) {
	st, _ := openSQLite(t)
	seed(t, st, 10)
	h5 := rowAt(t, st, 5).Hash
	ctx := t.Context()

	if n, err := Purge(ctx, st, testTime.Add(-time.Hour), "cli:alice"); err != nil || n != 0 {
		t.Fatalf("purge of nothing: %d, %v", n, err)
	}
	if _, err := Purge(ctx, st, time.Now().Add(time.Hour), "cli:alice"); err == nil {
		t.Fatal("a purge before a future time was accepted")
	}
	n, err := Purge(ctx, st, entry(5).Time, "cli:alice")
	if err != nil || n != 5 {
		t.Fatalf("Purge: %d, %v; want 5", n, err)
	}
	res, err := Verify(ctx, st)
	if err != nil {
		t.Fatalf("Verify after purge: %v", err)
	}
	if res.Anchor.Seq != 5 || res.FirstSeq != 6 || res.LastSeq != 11 || res.Checked != 6 {
		t.Fatalf("after purge: %+v; want anchor 5, entries 6..11", res)
	}
	p := rowAt(t, st, 11)
	want := fmt.Sprintf("deleted=5 through_seq=5 anchor=%x", h5)
	if p.Action != ActionAuditPurge || p.Actor != "cli:alice" || p.Decision != Allow || p.Reason != want {
		t.Fatalf("purge entry %+v, want reason %q", p, want)
	}
	// The purge of nothing above recorded nothing.
	all, _ := rows(t, st)
	if len(all) != 6 {
		t.Fatalf("%d entries left, want 6", len(all))
	}
	// A checkpoint taken before the purge can no longer be checked, and
	// says so instead of failing.
	res, err = Verify(ctx, st, Link{Seq: 3, Hash: h5})
	if err != nil || res.Unchecked != 1 {
		t.Fatalf("purged checkpoint: %+v, %v", res, err)
	}
}

func TestPurgeInBatches(t *testing.T) {
	old := purgeBatch
	purgeBatch = 3
	t.Cleanup(func() { purgeBatch = old })
	st, _ := openSQLite(t)
	seed(t, st, 10)
	n, err := Purge(t.Context(), st, entry(8).Time, "")
	if err != nil || n != 8 {
		t.Fatalf("Purge: %d, %v; want 8", n, err)
	}
	res, err := Verify(t.Context(), st)
	if err != nil || res.Anchor.Seq != 8 {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
	all, _ := rows(t, st)
	var reasons []string
	for _, e := range all {
		if e.Action == ActionAuditPurge {
			if e.Actor != ActorHub {
				t.Fatalf("purge by %q, want the hub when no actor is given", e.Actor)
			}
			r := parsePurge(e)
			reasons = append(reasons, fmt.Sprintf("%d@%d", r.deleted, r.anchor.Seq))
		}
	}
	if fmt.Sprint(reasons) != "[3@3 3@6 2@8]" {
		t.Fatalf("purge entries %v, want one per batch: [3@3 3@6 2@8]", reasons)
	}
}

func TestVerifyDetectsTamperingAfterPurge(t *testing.T) {
	cases := []struct {
		name     string
		tamper   func(t *testing.T, db *sql.DB, st Reader)
		wantSeq  int64
		wantKind BreakKind
	}{
		{"anchor moved over deleted entries", func(t *testing.T, db *sql.DB, st Reader) {
			e7 := rowAt(t, st, 7)
			exec(t, db, `DELETE FROM audit_log WHERE seq IN (6, 7)`)
			exec(t, db, `UPDATE audit_chain SET anchor_seq = 7, anchor_hash = ?`, e7.Hash)
		}, 8, BreakAnchor},
		{"anchor hash changed", func(t *testing.T, db *sql.DB, _ Reader) {
			exec(t, db, `UPDATE audit_chain SET anchor_hash = zeroblob(32)`)
		}, 6, BreakLink},
		{"anchor removed", func(t *testing.T, db *sql.DB, _ Reader) {
			exec(t, db, `UPDATE audit_chain SET anchor_seq = 0, anchor_hash = zeroblob(32)`)
		}, 1, BreakMissing},
		{"anchor moved backwards", func(t *testing.T, db *sql.DB, _ Reader) {
			exec(t, db, `UPDATE audit_chain SET anchor_seq = 2`)
		}, 3, BreakMissing},
		{"purge record edited", func(t *testing.T, db *sql.DB, _ Reader) {
			exec(t, db, `UPDATE audit_log SET reason = 'deleted=1 through_seq=5' WHERE seq = 11`)
		}, 11, BreakChanged},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st, path := openSQLite(t)
			seed(t, st, 10)
			if n, err := Purge(t.Context(), st, entry(5).Time, "cli:alice"); err != nil || n != 5 {
				t.Fatalf("Purge: %d, %v", n, err)
			}
			c.tamper(t, tamperDB(t, path), st)
			_, err := Verify(t.Context(), st)
			var brk *Break
			if !errors.As(err, &brk) || brk.Seq != c.wantSeq || brk.Kind != c.wantKind {
				t.Fatalf("Verify: %v; want a %s break at seq %d", err, c.wantKind, c.wantSeq)
			}
		})
	}
}

func TestRunRetention(t *testing.T) {
	st, _ := openSQLite(t)
	seed(t, st, 5) // in 2025: far older than a day
	tr := New(st, nil, "hub-a")
	defer tr.Close()

	// Retention 0 keeps everything and returns at once.
	done := make(chan struct{})
	go func() { tr.RunRetention(t.Context(), 0, time.Hour); close(done) }()
	<-done

	ctx, cancel := context.WithCancel(t.Context())
	done = make(chan struct{})
	go func() { tr.RunRetention(ctx, 24*time.Hour, time.Hour); close(done) }()
	checkFor(t, 10*time.Second, func() error {
		res, err := Verify(t.Context(), st)
		if err != nil {
			return err
		}
		if res.Anchor.Seq != 5 {
			return fmt.Errorf("anchor at %d, want 5", res.Anchor.Seq)
		}
		return nil
	})
	cancel()
	<-done
	p := rowAt(t, st, 6)
	if p.Action != ActionAuditPurge || p.Actor != ActorHub || p.Instance != "hub-a" {
		t.Fatalf("retention's purge entry: %+v", p)
	}
}
