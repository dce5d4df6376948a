package storetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

var auditTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"AuditAppend", testAuditAppend},
	{"AuditBadHash", testAuditBadHash},
	{"AuditStreamDuplicates", testAuditStreamDuplicates},
	{"AuditConcurrentAppenders", testAuditConcurrentAppenders},
	{"AuditPurge", testAuditPurge},
	{"AuditPurgePrefixOnly", testAuditPurgePrefixOnly},
	{"AuditRead", testAuditRead},
	{"AuditReadSnapshot", testAuditReadSnapshot},
}

// auditHash stands in for the audit package's hash (the store must work
// with whatever function it is given): any change to a field or to the
// link changes it.
func auditHash(e *store.AuditEntry) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%x|%d|%d|%q|%q|%q|%q|%q|%q|%q|%q|%q|%q|%q", e.PrevHash, e.Seq, e.Time.UnixMilli(),
		e.Actor, e.Action, e.RoomID, e.Target, e.EventID, e.EventType, e.Decision, e.Reason, e.RequestID, e.Instance, e.Source)
	return h.Sum(nil)
}

var zeroHash = make([]byte, 32)

// auditT0 is a fixed past time with sub-millisecond digits, which the
// store must drop.
var auditT0 = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))

func auditEntry(i int) store.AuditEntry {
	return store.AuditEntry{
		Time:      auditT0.Add(time.Duration(i) * time.Minute),
		Actor:     fmt.Sprintf("@8100000000%02d:hub.test", i),
		Action:    "room.invite",
		RoomID:    "!room:hub.test",
		Target:    "@810000000090:hub.test",
		EventType: "m.room.member",
		Decision:  "deny",
		Reason:    "EIMIS_INACTIVE_PRACTITIONER",
		RequestID: fmt.Sprintf("req-%d", i),
		Instance:  "hub-a",
	}
}

func appendAudit(t *testing.T, s store.Store, es ...store.AuditEntry) []store.AuditEntry {
	t.Helper()
	out, err := s.AppendAudit(t.Context(), es, auditHash)
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if len(out) != len(es) {
		t.Fatalf("AppendAudit returned %d entries for %d", len(out), len(es))
	}
	return out
}

// readAudit reads every entry and the chain state.
func readAudit(t *testing.T, s store.Store, q store.AuditQuery) ([]store.AuditEntry, store.AuditChain) {
	t.Helper()
	var got []store.AuditEntry
	chain, err := s.ReadAudit(t.Context(), q, func(e store.AuditEntry) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadAudit: %v", err)
	}
	return got, chain
}

// checkAuditChain asserts rows are seq first..first+len-1, each linked to
// the one before (the first to prev), each hash recomputable, and the
// chain's head at the last row.
func checkAuditChain(t *testing.T, rows []store.AuditEntry, chain store.AuditChain, first int64, prev []byte) {
	t.Helper()
	for i, e := range rows {
		if e.Seq != first+int64(i) {
			t.Fatalf("row %d has seq %d, want %d", i, e.Seq, first+int64(i))
		}
		if !bytes.Equal(e.PrevHash, prev) {
			t.Fatalf("seq %d: prev_hash %x, want %x", e.Seq, e.PrevHash, prev)
		}
		if h := auditHash(&e); !bytes.Equal(h, e.Hash) {
			t.Fatalf("seq %d: stored hash %x, recomputed %x", e.Seq, e.Hash, h)
		}
		prev = e.Hash
	}
	wantHead := store.AuditLink{Seq: first + int64(len(rows)) - 1, Hash: prev}
	if chain.Head.Seq != wantHead.Seq || !bytes.Equal(chain.Head.Hash, wantHead.Hash) {
		t.Fatalf("chain head %d:%x, want %d:%x", chain.Head.Seq, chain.Head.Hash, wantHead.Seq, wantHead.Hash)
	}
}

func testAuditAppend(t *testing.T, s store.Store) {
	rows, chain := readAudit(t, s, store.AuditQuery{})
	if len(rows) != 0 || chain.Head.Seq != 0 || chain.Anchor.Seq != 0 ||
		!bytes.Equal(chain.Head.Hash, zeroHash) || !bytes.Equal(chain.Anchor.Hash, zeroHash) {
		t.Fatalf("empty trail: %d rows, chain %+v; want none, anchor and head at seq 0 with the zero hash", len(rows), chain)
	}
	if out, err := s.AppendAudit(t.Context(), nil, auditHash); err != nil || len(out) != 0 {
		t.Fatalf("empty append: %v, %v", out, err)
	}

	in := []store.AuditEntry{auditEntry(0), auditEntry(1), auditEntry(2)}
	in[1].Source, in[1].EventID, in[1].Decision = store.AuditSourceStream, "$ev1", "allow"
	in[2].Time = time.Time{} // the store stamps it
	before := time.Now().Truncate(time.Millisecond)
	out := appendAudit(t, s, in...)
	after := time.Now()
	for i, e := range out {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d got seq %d, want %d", i, e.Seq, i+1)
		}
	}
	if !out[0].Time.Equal(auditT0.Truncate(time.Millisecond)) || out[0].Time.Location() != time.UTC {
		t.Fatalf("time stored as %v, want %v in UTC, whole milliseconds", out[0].Time, auditT0.Truncate(time.Millisecond))
	}
	if out[2].Time.Before(before) || out[2].Time.After(after) {
		t.Fatalf("zero time stamped %v, want between %v and %v", out[2].Time, before, after)
	}

	rows, chain = readAudit(t, s, store.AuditQuery{})
	checkAuditChain(t, rows, chain, 1, zeroHash)
	for i := range rows {
		// Everything read back is what AppendAudit returned: the hash
		// covers these values, so one changed in storage would not verify.
		if fmt.Sprintf("%+v", rows[i]) != fmt.Sprintf("%+v", out[i]) {
			t.Fatalf("read back\n%+v\nappended\n%+v", rows[i], out[i])
		}
	}

	more := appendAudit(t, s, auditEntry(3))
	if more[0].Seq != 4 || !bytes.Equal(more[0].PrevHash, out[2].Hash) {
		t.Fatalf("next append got seq %d prev %x, want seq 4 linked to %x", more[0].Seq, more[0].PrevHash, out[2].Hash)
	}
	rows, chain = readAudit(t, s, store.AuditQuery{})
	checkAuditChain(t, rows, chain, 1, zeroHash)
}

func testAuditBadHash(t *testing.T, s store.Store) {
	short := func(*store.AuditEntry) []byte { return []byte{1, 2, 3} }
	if _, err := s.AppendAudit(t.Context(), []store.AuditEntry{auditEntry(0)}, short); !errors.Is(err, store.ErrAuditHash) {
		t.Fatalf("short hash: %v, want ErrAuditHash", err)
	}
	if rows, chain := readAudit(t, s, store.AuditQuery{}); len(rows) != 0 || chain.Head.Seq != 0 {
		t.Fatalf("a refused append left %d rows, head %d", len(rows), chain.Head.Seq)
	}
}

func testAuditStreamDuplicates(t *testing.T, s store.Store) {
	stream := func(i int, id string) store.AuditEntry {
		e := auditEntry(i)
		e.Source, e.EventID, e.Decision = store.AuditSourceStream, id, "allow"
		return e
	}
	first := appendAudit(t, s, stream(0, "$a"))
	// A redelivery of $a, a new $b twice in one batch, and $a recorded by
	// the API (not the stream), which is a different fact and is kept.
	api := auditEntry(4)
	api.EventID = "$a"
	out := appendAudit(t, s, stream(1, "$a"), stream(2, "$b"), stream(3, "$b"), api)
	wantSeq := []int64{0, 2, 0, 3}
	for i, e := range out {
		if e.Seq != wantSeq[i] {
			t.Fatalf("entry %d: seq %d, want %d (0 = skipped duplicate)", i, e.Seq, wantSeq[i])
		}
	}
	if !bytes.Equal(out[1].PrevHash, first[0].Hash) || !bytes.Equal(out[3].PrevHash, out[1].Hash) {
		t.Fatal("a skipped duplicate broke the links around it")
	}
	// Alone in a batch, the duplicate changes nothing.
	if again := appendAudit(t, s, stream(5, "$b")); again[0].Seq != 0 {
		t.Fatalf("redelivered $b stored again at seq %d", again[0].Seq)
	}
	rows, chain := readAudit(t, s, store.AuditQuery{})
	checkAuditChain(t, rows, chain, 1, zeroHash)
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3 ($a, $b, the API's $a)", len(rows))
	}
}

// testAuditConcurrentAppenders is several hub instances (or one hub's
// writers) appending at once: the result must still be one chain.
func testAuditConcurrentAppenders(t *testing.T, s store.Store) {
	const writers, batches = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				es := make([]store.AuditEntry, 1+(w+b)%3)
				for i := range es {
					es[i] = auditEntry(w)
					es[i].RequestID = fmt.Sprintf("w%d-b%d-%d", w, b, i)
					if i == 0 && b%2 == 0 {
						// The same stream event from every writer: stored once.
						es[i].Source, es[i].EventID, es[i].Decision = store.AuditSourceStream, fmt.Sprintf("$shared-%d", b), "allow"
					}
				}
				if _, err := s.AppendAudit(t.Context(), es, auditHash); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent AppendAudit: %v", err)
	}
	want := 0
	for w := range writers {
		for b := range batches {
			want += 1 + (w+b)%3
			if b%2 == 0 {
				want-- // the shared event, counted once below
			}
		}
	}
	want += (batches + 1) / 2
	rows, chain := readAudit(t, s, store.AuditQuery{})
	if len(rows) != want {
		t.Fatalf("%d rows, want %d", len(rows), want)
	}
	checkAuditChain(t, rows, chain, 1, zeroHash)
}

func purgeRecord(p store.AuditPurge) store.AuditEntry {
	return store.AuditEntry{
		Time:     time.Now(),
		Actor:    "hub",
		Action:   "audit.purge",
		Decision: "allow",
		Reason:   fmt.Sprintf("deleted=%d through_seq=%d anchor=%x", p.Deleted, p.Anchor.Seq, p.Anchor.Hash),
	}
}

func testAuditPurge(t *testing.T, s store.Store) {
	var in []store.AuditEntry
	for i := range 10 {
		in = append(in, auditEntry(i)) // one a minute from auditT0
	}
	all := appendAudit(t, s, in...)
	ctx := t.Context()

	// Nothing older than the first entry: nothing happens, nothing recorded.
	p, err := s.PurgeAudit(ctx, auditT0.Add(-time.Hour), 100, purgeRecord, auditHash)
	if err != nil || p.Deleted != 0 || p.Entry.Seq != 0 {
		t.Fatalf("purge of nothing: %+v, %v", p, err)
	}
	if _, err := s.PurgeAudit(ctx, auditT0, 0, purgeRecord, auditHash); err == nil {
		t.Fatal("limit 0 accepted")
	}

	// Entries 1..5 are older than the 6th (seq 6).
	p, err = s.PurgeAudit(ctx, all[5].Time, 100, purgeRecord, auditHash)
	if err != nil {
		t.Fatalf("PurgeAudit: %v", err)
	}
	if p.Deleted != 5 || p.Anchor.Seq != 5 || !bytes.Equal(p.Anchor.Hash, all[4].Hash) {
		t.Fatalf("purge: deleted %d, anchor %d:%x; want 5, 5:%x", p.Deleted, p.Anchor.Seq, p.Anchor.Hash, all[4].Hash)
	}
	if p.Entry.Seq != 11 || !bytes.Equal(p.Entry.PrevHash, all[9].Hash) || p.Entry.Action != "audit.purge" ||
		p.Entry.Reason != purgeRecord(store.AuditPurge{Deleted: 5, Anchor: p.Anchor}).Reason {
		t.Fatalf("purge entry %+v: want seq 11 after seq 10, recording the purge", p.Entry)
	}
	rows, chain := readAudit(t, s, store.AuditQuery{})
	if chain.Anchor.Seq != 5 || !bytes.Equal(chain.Anchor.Hash, all[4].Hash) {
		t.Fatalf("stored anchor %d:%x, want 5:%x", chain.Anchor.Seq, chain.Anchor.Hash, all[4].Hash)
	}
	checkAuditChain(t, rows, chain, 6, all[4].Hash)

	// A limit makes batches; each is a purge of its own, recorded.
	p, err = s.PurgeAudit(ctx, all[9].Time, 2, purgeRecord, auditHash)
	if err != nil || p.Deleted != 2 || p.Anchor.Seq != 7 || p.Entry.Seq != 12 {
		t.Fatalf("limited purge: %+v, %v; want 2 deleted, anchor 7, entry 12", p, err)
	}
	p, err = s.PurgeAudit(ctx, all[9].Time, 2, purgeRecord, auditHash)
	if err != nil || p.Deleted != 2 || p.Anchor.Seq != 9 || p.Entry.Seq != 13 {
		t.Fatalf("second limited purge: %+v, %v; want 2 deleted, anchor 9, entry 13", p, err)
	}
	// Entry 10 is not older than itself, and the purge entries are new.
	p, err = s.PurgeAudit(ctx, all[9].Time, 2, purgeRecord, auditHash)
	if err != nil || p.Deleted != 0 {
		t.Fatalf("purge with nothing left before the cut: %+v, %v", p, err)
	}
	rows, chain = readAudit(t, s, store.AuditQuery{})
	checkAuditChain(t, rows, chain, 10, all[8].Hash)
	if len(rows) != 4 || rows[0].Seq != 10 || rows[3].Seq != 13 {
		t.Fatalf("left seqs %d..%d (%d rows), want 10..13", rows[0].Seq, rows[len(rows)-1].Seq, len(rows))
	}

	// Appending goes on after the purge entries.
	next := appendAudit(t, s, auditEntry(20))
	if next[0].Seq != 14 || !bytes.Equal(next[0].PrevHash, rows[3].Hash) {
		t.Fatalf("append after purge: seq %d", next[0].Seq)
	}
}

// testAuditPurgePrefixOnly: an entry with an early time after a later one
// (another instance's clock) is kept until everything before it goes, so
// a purge never makes a hole in the chain.
func testAuditPurgePrefixOnly(t *testing.T, s store.Store) {
	all := appendAudit(t, s, auditEntry(0), auditEntry(5), auditEntry(1), auditEntry(6))
	p, err := s.PurgeAudit(t.Context(), auditT0.Add(3*time.Minute), 100, purgeRecord, auditHash)
	if err != nil || p.Deleted != 1 || p.Anchor.Seq != 1 {
		t.Fatalf("purge: %+v, %v; want only seq 1 deleted", p, err)
	}
	rows, chain := readAudit(t, s, store.AuditQuery{})
	checkAuditChain(t, rows, chain, 2, all[0].Hash)
	if rows[1].Seq != 3 || !rows[1].Time.Before(auditT0.Add(3*time.Minute)) {
		t.Fatalf("the old entry behind a young one was not kept: %+v", rows[1])
	}
}

func testAuditRead(t *testing.T, s store.Store) {
	var in []store.AuditEntry
	for i := range 8 {
		in = append(in, auditEntry(i))
	}
	all := appendAudit(t, s, in...)
	seqs := func(rows []store.AuditEntry) []int64 {
		out := []int64{}
		for _, r := range rows {
			out = append(out, r.Seq)
		}
		return out
	}
	cases := []struct {
		name string
		q    store.AuditQuery
		want []int64
	}{
		{"all", store.AuditQuery{}, []int64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"after seq", store.AuditQuery{AfterSeq: 5}, []int64{6, 7, 8}},
		{"since inclusive", store.AuditQuery{Since: all[2].Time}, []int64{3, 4, 5, 6, 7, 8}},
		{"until exclusive", store.AuditQuery{Until: all[2].Time}, []int64{1, 2}},
		{"window", store.AuditQuery{Since: all[2].Time, Until: all[4].Time.Add(time.Millisecond)}, []int64{3, 4, 5}},
		{"window and seq", store.AuditQuery{AfterSeq: 3, Since: all[2].Time, Until: all[4].Time.Add(time.Millisecond)}, []int64{4, 5}},
		{"empty window", store.AuditQuery{Since: all[7].Time.Add(time.Hour)}, []int64{}},
	}
	for _, c := range cases {
		rows, _ := readAudit(t, s, c.q)
		if got := seqs(rows); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: seqs %v, want %v", c.name, got, c.want)
		}
	}

	// fn's error stops the read at once, comes back wrapped, and the
	// chain state comes back with it.
	stop := errors.New("enough")
	calls := 0
	chain, err := s.ReadAudit(t.Context(), store.AuditQuery{}, func(e store.AuditEntry) error {
		calls++
		if e.Seq == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("stopped read: %d calls, err %v; want 3 calls and the callback's error", calls, err)
	}
	if chain.Head.Seq != 8 || !bytes.Equal(chain.Head.Hash, all[7].Hash) {
		t.Fatalf("chain state lost on a stopped read: %+v", chain)
	}
}

// testAuditReadSnapshot appends while a read is under way: the read sees
// neither the new rows nor the new head, so its chain state always
// matches the rows it returned.
func testAuditReadSnapshot(t *testing.T, s store.Store) {
	appendAudit(t, s, auditEntry(0), auditEntry(1), auditEntry(2))
	var seen []int64
	chain, err := s.ReadAudit(t.Context(), store.AuditQuery{}, func(e store.AuditEntry) error {
		if e.Seq == 1 {
			if _, err := s.AppendAudit(t.Context(), []store.AuditEntry{auditEntry(3), auditEntry(4)}, auditHash); err != nil {
				return err
			}
			if _, err := s.PurgeAudit(t.Context(), auditT0.Add(90*time.Second), 10, purgeRecord, auditHash); err != nil {
				return err
			}
		}
		seen = append(seen, e.Seq)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadAudit: %v", err)
	}
	if fmt.Sprint(seen) != "[1 2 3]" || chain.Head.Seq != 3 || chain.Anchor.Seq != 0 {
		t.Fatalf("read during writes saw seqs %v, head %d, anchor %d; want [1 2 3], 3, 0 (its snapshot)", seen, chain.Head.Seq, chain.Anchor.Seq)
	}
	rows, chain := readAudit(t, s, store.AuditQuery{})
	if chain.Head.Seq != 6 || chain.Anchor.Seq != 2 || len(rows) != 4 {
		t.Fatalf("after the writes: head %d, anchor %d, %d rows; want 6, 2, 4", chain.Head.Seq, chain.Anchor.Seq, len(rows))
	}
}
