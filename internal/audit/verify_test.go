package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

// rowAt reads one stored entry.
func rowAt(t *testing.T, st Reader, seq int64) Entry {
	t.Helper()
	all, _ := rows(t, st)
	for _, e := range all {
		if e.Seq == seq {
			return e
		}
	}
	t.Fatalf("no entry %d", seq)
	return Entry{}
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// rewrite replaces entry seq by e (same seq) with a correct hash, then
// re-links and re-hashes every later entry and the head: what someone
// who read the package documentation could do.
func rewrite(t *testing.T, db *sql.DB, st Reader, e Entry) {
	t.Helper()
	all, _ := rows(t, st)
	var prev []byte
	for _, r := range all {
		if r.Seq < e.Seq {
			prev = r.Hash
			continue
		}
		if r.Seq == e.Seq {
			r = e
		}
		r.PrevHash = prev
		r.Hash = Hash(&r)
		exec(t, db, `UPDATE audit_log SET actor = ?, reason = ?, prev_hash = ?, hash = ? WHERE seq = ?`, r.Actor, r.Reason, r.PrevHash, r.Hash, r.Seq)
		prev = r.Hash
		exec(t, db, `UPDATE audit_chain SET head_seq = ?, head_hash = ?`, r.Seq, r.Hash)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	const n = 10
	cases := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, st Reader)
		// checkpoint gives Verify the head noted before tampering.
		checkpoint bool
		wantSeq    int64 // 0: the chain must verify
		wantKind   BreakKind
		wantDetail string
	}{
		{name: "untouched"},
		{name: "untouched, with checkpoint", checkpoint: true},
		{name: "field changed", wantSeq: 4, wantKind: BreakChanged,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `UPDATE audit_log SET reason = 'EIMIS_OK' WHERE seq = 4`)
			}},
		{name: "time changed by a millisecond", wantSeq: 7, wantKind: BreakChanged,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `UPDATE audit_log SET time = time + 1 WHERE seq = 7`)
			}},
		{name: "decision flipped", wantSeq: 2, wantKind: BreakChanged,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `UPDATE audit_log SET decision = 'allow' WHERE seq = 2`)
			}},
		{name: "changed and its own hash recomputed", wantSeq: 5, wantKind: BreakLink,
			tamper: func(t *testing.T, db *sql.DB, st Reader) {
				e := rowAt(t, st, 4)
				e.Actor = "@someone-else:hub.test"
				exec(t, db, `UPDATE audit_log SET actor = ?, hash = ? WHERE seq = 4`, e.Actor, Hash(&e))
			}},
		{name: "prev hash changed", wantSeq: 6, wantKind: BreakLink,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `UPDATE audit_log SET prev_hash = zeroblob(32) WHERE seq = 6`)
			}},
		{name: "middle entry deleted", wantSeq: 5, wantKind: BreakMissing, wantDetail: "entry 5 is missing",
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `DELETE FROM audit_log WHERE seq = 5`)
			}},
		{name: "several deleted", wantSeq: 3, wantKind: BreakMissing, wantDetail: "entries 3 to 6 are missing",
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `DELETE FROM audit_log WHERE seq BETWEEN 3 AND 6`)
			}},
		{name: "middle deleted and the rest renumbered", wantSeq: 5, wantKind: BreakLink,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `DELETE FROM audit_log WHERE seq = 5`)
				exec(t, db, `UPDATE audit_log SET seq = seq - 1 WHERE seq > 5`)
				exec(t, db, `UPDATE audit_chain SET head_seq = head_seq - 1`)
			}},
		{name: "first entry changed", wantSeq: 1, wantKind: BreakChanged,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `UPDATE audit_log SET target = '' WHERE seq = 1`)
			}},
		{name: "first deleted, second changed", wantSeq: 1, wantKind: BreakMissing,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `DELETE FROM audit_log WHERE seq = 1`)
				exec(t, db, `UPDATE audit_log SET target = '' WHERE seq = 2`)
			}},
		{name: "first entry deleted", wantSeq: 1, wantKind: BreakMissing,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `DELETE FROM audit_log WHERE seq = 1`)
			}},
		{name: "last entry deleted", wantSeq: n, wantKind: BreakMissing, wantDetail: "last entries were deleted",
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `DELETE FROM audit_log WHERE seq = ?`, n)
			}},
		{name: "every entry deleted", wantSeq: 1, wantKind: BreakMissing,
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `DELETE FROM audit_log`)
			}},
		{name: "reordered", wantSeq: 3, wantKind: BreakLink, wantDetail: "moved",
			tamper: func(t *testing.T, db *sql.DB, _ Reader) {
				exec(t, db, `UPDATE audit_log SET seq = -1 WHERE seq = 3`)
				exec(t, db, `UPDATE audit_log SET seq = 3 WHERE seq = 4`)
				exec(t, db, `UPDATE audit_log SET seq = 4 WHERE seq = -1`)
			}},
		{name: "forged entry appended", wantSeq: n + 1, wantKind: BreakHead,
			tamper: func(t *testing.T, db *sql.DB, st Reader) {
				last := rowAt(t, st, n)
				e := entry(99)
				e.Seq, e.PrevHash, e.Decision = n+1, last.Hash, Allow
				e.Hash = Hash(&e)
				exec(t, db, `INSERT INTO audit_log (seq, time, actor, action, room_id, target, decision, reason, request_id, prev_hash, hash)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, e.Time.UnixMilli(), e.Actor, e.Action, e.RoomID, e.Target, e.Decision, e.Reason, e.RequestID, e.PrevHash, e.Hash)
			}},

		// What the database alone cannot prove, and what a checkpoint
		// kept elsewhere catches.
		{name: "limit: tail and head deleted together",
			tamper: func(t *testing.T, db *sql.DB, st Reader) {
				prev := rowAt(t, st, n-1)
				exec(t, db, `DELETE FROM audit_log WHERE seq = ?`, n)
				exec(t, db, `UPDATE audit_chain SET head_seq = ?, head_hash = ?`, prev.Seq, prev.Hash)
			}},
		{name: "tail and head deleted together, with checkpoint", checkpoint: true, wantSeq: n, wantKind: BreakMissing,
			tamper: func(t *testing.T, db *sql.DB, st Reader) {
				prev := rowAt(t, st, n-1)
				exec(t, db, `DELETE FROM audit_log WHERE seq = ?`, n)
				exec(t, db, `UPDATE audit_chain SET head_seq = ?, head_hash = ?`, prev.Seq, prev.Hash)
			}},
		{name: "limit: chain recomputed after a change",
			tamper: func(t *testing.T, db *sql.DB, st Reader) {
				e := rowAt(t, st, 4)
				e.Reason = "EIMIS_OK"
				rewrite(t, db, st, e)
			}},
		{name: "chain recomputed after a change, with checkpoint", checkpoint: true, wantSeq: n, wantKind: BreakCheckpoint,
			tamper: func(t *testing.T, db *sql.DB, st Reader) {
				e := rowAt(t, st, 4)
				e.Reason = "EIMIS_OK"
				rewrite(t, db, st, e)
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st, path := openSQLite(t)
			seed(t, st, n)
			before, err := Verify(t.Context(), st)
			if err != nil || before.Checked != n {
				t.Fatalf("before tampering: %+v, %v", before, err)
			}
			if c.tamper != nil {
				c.tamper(t, tamperDB(t, path), st)
			}
			var cps []Link
			if c.checkpoint {
				cps = append(cps, before.Head)
			}
			res, err := Verify(t.Context(), st, cps...)
			if c.wantSeq == 0 {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var brk *Break
			if !errors.As(err, &brk) || !errors.Is(err, ErrBroken) {
				t.Fatalf("Verify: %v (%+v), want a break at seq %d", err, res, c.wantSeq)
			}
			if brk.Seq != c.wantSeq || brk.Kind != c.wantKind || res.Break != brk {
				t.Fatalf("break %+v, want seq %d, kind %s", brk, c.wantSeq, c.wantKind)
			}
			if !strings.Contains(brk.Error(), c.wantDetail) || !strings.HasPrefix(brk.Error(), "broken at seq ") {
				t.Fatalf("message %q lacks %q", brk.Error(), c.wantDetail)
			}
		})
	}
}

// TestTriggersRefuseRewrites: without dropping the triggers, the database
// refuses updates and deletes of live entries, so an honest mistake (or a
// bug) cannot rewrite history.
func TestTriggersRefuseRewrites(t *testing.T) {
	st, path := openSQLite(t)
	seed(t, st, 3)
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE audit_log SET reason = '' WHERE seq = 2`,
		`DELETE FROM audit_log WHERE seq = 3`,
		`DELETE FROM audit_log`,
	} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "audit_log") {
			t.Errorf("%s: %v, want the trigger's refusal", q, err)
		}
	}
	if res, err := Verify(t.Context(), st); err != nil || res.Checked != 3 {
		t.Fatalf("after refused rewrites: %+v, %v", res, err)
	}
}

func TestVerifyEmptyAndCheckpoints(t *testing.T) {
	st, _ := openSQLite(t)
	res, err := Verify(t.Context(), st)
	if err != nil || res.Checked != 0 || res.Head.Seq != 0 || !bytes.Equal(res.Head.Hash, make([]byte, 32)) {
		t.Fatalf("empty trail: %+v, %v", res, err)
	}
	seed(t, st, 5)
	res, err = Verify(t.Context(), st)
	if err != nil || res.Checked != 5 || res.FirstSeq != 1 || res.LastSeq != 5 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
	e3 := rowAt(t, st, 3)
	cases := []struct {
		name string
		cp   Link
		want BreakKind // "" = holds
	}{
		{"head", res.Head, ""},
		{"middle", Link{Seq: 3, Hash: e3.Hash}, ""},
		{"start", Link{Seq: 0, Hash: make([]byte, 32)}, ""},
		{"wrong hash", Link{Seq: 3, Hash: bytes.Repeat([]byte{7}, 32)}, BreakCheckpoint},
		{"beyond the end", Link{Seq: 9, Hash: e3.Hash}, BreakMissing},
	}
	for _, c := range cases {
		_, err := Verify(t.Context(), st, c.cp)
		var brk *Break
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (!errors.As(err, &brk) || brk.Kind != c.want):
			t.Errorf("%s: %v, want a %s break", c.name, err, c.want)
		}
	}
}

// failingReader fails the read after a few entries.
type failingReader struct{ Reader }

var errDisk = errors.New("I/O error")

func (f failingReader) ReadAudit(ctx context.Context, q store.AuditQuery, fn func(store.AuditEntry) error) (store.AuditChain, error) {
	n := 0
	chain, err := f.Reader.ReadAudit(ctx, q, func(e store.AuditEntry) error {
		if n++; n == 3 {
			return errDisk
		}
		return fn(e)
	})
	return chain, err
}

func TestVerifyReadError(t *testing.T) {
	st, _ := openSQLite(t)
	seed(t, st, 5)
	_, err := Verify(t.Context(), failingReader{st})
	if !errors.Is(err, errDisk) || errors.Is(err, ErrBroken) {
		t.Fatalf("read failure: %v, want the I/O error, not a break", err)
	}
}
