package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestHashMatchesDocumentedEncoding re-implements the encoding from the
// package documentation, as an auditor would, and pins one vector: the
// hash of every stored entry depends on it, so it must never change
// within version 1.
func TestHashMatchesDocumentedEncoding(t *testing.T) {
	e := Entry{
		Seq: 42, Time: time.Date(2026, 1, 31, 14, 0, 0, 123_000_000, time.UTC),
		Actor: "@810000000017:hub.test", Action: "room.invite", RoomID: "!r:hub.test", Target: "@810000000090:hub.test",
		EventID: "$ev", EventType: "m.room.member", Decision: "deny", Reason: "EIMIS_INACTIVE_PRACTITIONER",
		RequestID: "req-1", Instance: "hub-a", Source: "",
		PrevHash: bytes.Repeat([]byte{0xab}, 32),
	}
	var b bytes.Buffer
	b.WriteString("eimis-audit-v1")
	b.Write(e.PrevHash)
	binary.Write(&b, binary.BigEndian, e.Seq)
	binary.Write(&b, binary.BigEndian, e.Time.UnixMilli())
	for _, f := range []string{e.Actor, e.Action, e.RoomID, e.Target, e.EventID, e.EventType,
		e.Decision, e.Reason, e.RequestID, e.Instance, e.Source} {
		binary.Write(&b, binary.BigEndian, uint32(len(f)))
		b.WriteString(f)
	}
	want := sha256.Sum256(b.Bytes())
	if got := Hash(&e); !bytes.Equal(got, want[:]) {
		t.Fatalf("Hash = %x, documented encoding gives %x", got, want)
	}
	// Computed once with an independent implementation (Python hashlib, struct).
	const pinned = "2916f7537a4cabb1e186046b56e059e294708fc0b3a87cb58445b2f97a15bb22"
	if got := hex.EncodeToString(Hash(&e)); got != pinned {
		t.Fatalf("the version 1 encoding changed: hash %s, pinned %s", got, pinned)
	}
}

// TestHashCoversEveryField: changing any one field, or moving bytes
// between neighbouring fields, changes the hash.
func TestHashCoversEveryField(t *testing.T) {
	base := entry(1)
	base.Seq, base.PrevHash, base.EventID, base.EventType, base.Instance = 7, make([]byte, 32), "$e", "m.room.member", "hub-a"
	h0 := Hash(&base)
	cases := []struct {
		name string
		mod  func(e *Entry)
	}{
		{"seq", func(e *Entry) { e.Seq++ }},
		{"time", func(e *Entry) { e.Time = e.Time.Add(time.Millisecond) }},
		{"prev hash", func(e *Entry) { e.PrevHash = bytes.Repeat([]byte{1}, 32) }},
		{"actor", func(e *Entry) { e.Actor += "x" }},
		{"action", func(e *Entry) { e.Action = ActionRoomKick }},
		{"room", func(e *Entry) { e.RoomID += "x" }},
		{"target", func(e *Entry) { e.Target += "x" }},
		{"event id", func(e *Entry) { e.EventID += "x" }},
		{"event type", func(e *Entry) { e.EventType += "x" }},
		{"decision", func(e *Entry) { e.Decision = Allow }},
		{"reason", func(e *Entry) { e.Reason = "" }},
		{"request id", func(e *Entry) { e.RequestID += "x" }},
		{"instance", func(e *Entry) { e.Instance += "x" }},
		{"source", func(e *Entry) { e.Source = SourceStream }},
		{"byte moved between fields", func(e *Entry) { e.EventID, e.EventType = e.EventID+"m", strings.TrimPrefix(e.EventType, "m") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := base
			c.mod(&e)
			if bytes.Equal(Hash(&e), h0) {
				t.Fatal("hash unchanged")
			}
		})
	}
	// The stored hash itself is not an input.
	e := base
	e.Hash = []byte("anything")
	if !bytes.Equal(Hash(&e), h0) {
		t.Fatal("Hash depends on the Hash field")
	}
}

func TestNormalise(t *testing.T) {
	long := strings.Repeat("é", maxField) // 2 bytes each
	cases := []struct {
		name    string
		e       Entry
		invalid bool
		check   func(t *testing.T, e Entry)
	}{
		{name: "no action", e: Entry{Decision: Allow}, invalid: true},
		{name: "bad decision", e: Entry{Action: ActionLogin, Decision: "maybe"}, invalid: true},
		{name: "empty decision", e: Entry{Action: ActionLogin}, invalid: true},
		{name: "fine", e: Entry{Action: ActionLogin, Decision: Allow, Actor: "@a:b", Seq: 9, Hash: []byte{1}},
			check: func(t *testing.T, e Entry) {
				if e.Actor != "@a:b" || e.Seq != 0 || e.Hash != nil {
					t.Fatalf("a valid entry was altered, or kept a seq or hash: %+v", e)
				}
			}},
		{name: "invalid UTF-8 and NUL repaired", e: Entry{Action: ActionLogin, Decision: Deny, Actor: "@\xffa\x00b:hub"},
			check: func(t *testing.T, e Entry) {
				if e.Actor != "@\uFFFDa\uFFFDb:hub" {
					t.Fatalf("actor %q", e.Actor)
				}
			}},
		{name: "long text cut on a rune boundary", e: Entry{Action: ActionLogin, Decision: Deny, Reason: long},
			check: func(t *testing.T, e Entry) {
				if len(e.Reason) > maxField || !utf8.ValidString(e.Reason) || !strings.HasSuffix(e.Reason, "…") {
					t.Fatalf("reason of %d bytes, valid %v", len(e.Reason), utf8.ValidString(e.Reason))
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.e
			err := normalise(&e)
			if c.invalid != errors.Is(err, ErrInvalid) {
				t.Fatalf("normalise: %v, want invalid %v", err, c.invalid)
			}
			if c.check != nil {
				c.check(t, e)
			}
		})
	}
}
