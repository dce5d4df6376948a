package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExport(t *testing.T) {
	st, _ := openSQLite(t)
	seed(t, st, 6)
	tr := New(st, nil, "hub-a")
	odd := entry(6)
	odd.Actor, odd.Reason, odd.Source, odd.EventID = `@"<é>":hub.test`, "line\nbreak", SourceStream, "$x"
	if err := tr.Record(t.Context(), odd); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	cases := []struct {
		name         string
		since, until time.Time
		want         []int64
	}{
		{"everything", time.Time{}, time.Time{}, []int64{1, 2, 3, 4, 5, 6, 7}},
		{"window: since inclusive, until exclusive", entry(1).Time, entry(4).Time, []int64{2, 3, 4}},
		{"open end", entry(5).Time, time.Time{}, []int64{6, 7}},
		{"nothing", entry(9).Time, time.Time{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := Export(t.Context(), st, c.since, c.until, &buf)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			var prev []byte
			sc := bufio.NewScanner(&buf)
			for sc.Scan() {
				var keys map[string]any
				if err := json.Unmarshal(sc.Bytes(), &keys); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				if k := slices.Sorted(maps.Keys(keys)); strings.Join(k, ",") !=
					"action,actor,decision,event_id,event_type,hash,instance,prev_hash,reason,request_id,room_id,seq,source,target,time" {
					t.Fatalf("keys %v", k)
				}
				var l ExportLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatal(err)
				}
				// An auditor's check, from the line alone: the hash matches
				// the fields, and consecutive lines link.
				e := lineEntry(t, l)
				if hex.EncodeToString(Hash(&e)) != l.Hash {
					t.Fatalf("seq %d: the exported fields do not give the exported hash", l.Seq)
				}
				if prev != nil && !bytes.Equal(prev, e.PrevHash) {
					t.Fatalf("seq %d does not link to the line before", l.Seq)
				}
				prev = e.Hash
				got = append(got, l.Seq)
			}
			if n != len(got) || !slices.Equal(got, c.want) {
				t.Fatalf("exported seqs %v (n=%d), want %v", got, n, c.want)
			}
		})
	}

	var buf bytes.Buffer
	if _, err := Export(t.Context(), st, entry(1).Time, entry(2).Time, &buf); err != nil {
		t.Fatal(err)
	}
	if line := strings.TrimSpace(buf.String()); !strings.Contains(line, `"time":"2025-11-03T08:31:00.000Z"`) {
		t.Fatalf("time not RFC 3339 UTC with milliseconds: %s", line)
	}
}

func lineEntry(t *testing.T, l ExportLine) Entry {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, l.Time)
	if err != nil {
		t.Fatal(err)
	}
	prev, err1 := hex.DecodeString(l.PrevHash)
	hash, err2 := hex.DecodeString(l.Hash)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return Entry{Seq: l.Seq, Time: at, Actor: l.Actor, Action: l.Action, RoomID: l.RoomID, Target: l.Target,
		EventID: l.EventID, EventType: l.EventType, Decision: l.Decision, Reason: l.Reason, RequestID: l.RequestID,
		Instance: l.Instance, Source: l.Source, Door: l.Door, PrevHash: prev, Hash: hash}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestExportWriteError(t *testing.T) {
	st, _ := openSQLite(t)
	seed(t, st, 3)
	if _, err := Export(t.Context(), st, time.Time{}, time.Time{}, failWriter{}); err == nil {
		t.Fatal("a failed write was not reported")
	}
}
