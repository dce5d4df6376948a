// Package storetest is the conformance suite every store.Store dialect must
// pass, so that the hub behaves the same on SQLite and on PostgreSQL.
package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// Run runs the suite. open must return a fresh, empty store and arrange
// for it to be closed when t ends (t.Cleanup). Subtests run in parallel,
// each on its own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Empty", testEmpty},
		{"Accounts", testAccounts},
		{"Devices", testDevices},
		{"InsertEvent", testInsertEvent},
		{"JSONByteExact", testJSONByteExact},
		{"RoomEvents", testRoomEvents},
		{"EventsByID", testEventsByID},
		{"StateAndMemberships", testStateAndMemberships},
		{"Rollback", testRollback},
		{"FailedInsertNeverCommits", testFailedInsertNeverCommits},
		{"ReadYourWritesInTx", testReadYourWritesInTx},
		{"BatchedLookups", testBatchedLookups},
		{"TxnScopeAndDoor", testTxnScopeAndDoor},
		{"Redaction", testRedaction},
		{"StreamHeads", testStreamHeads},
		{"SearchAccounts", testSearchAccounts},
		{"SharedPositions", testSharedPositions},
		{"AccountData", testAccountData},
		{"Receipts", testReceipts},
		{"Filters", testFilters},
		{"Aliases", testAliases},
		{"Outbox", testOutbox},
		{"Meta", testMeta},
		{"LargeTransaction", testLargeTransaction},
		{"ConcurrentWriters", testConcurrentWriters},
		{"CommitOrderVisibility", testCommitOrderVisibility},
		{"DirectoryEmpty", testDirectoryEmpty},
		{"DirectoryImports", testDirectoryImports},
		{"DirectoryAtomicSwitch", testDirectoryAtomicSwitch},
		{"DirectoryAbort", testDirectoryAbort},
		{"DirectorySuperseded", testDirectorySuperseded},
		{"DirectoryDuplicate", testDirectoryDuplicate},
	}
	tests = append(tests, auditTests...)
	tests = append(tests, operatorTests...)
	tests = append(tests, trustTests...)
	tests = append(tests, bridgeTests...)
	tests = append(tests, historyTests...)
	tests = append(tests, appserviceTests...)
	tests = append(tests, consentTests...)
	tests = append(tests, dagTests...)
	tests = append(tests, serverKeyTests...)
	tests = append(tests, federationTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// Helpers.

func ptr(s string) *string { return &s }

// ev builds an event whose JSON looks like a real ~300 byte PDU.
func ev(room, id, typ string, stateKey *string, depth int64) store.NewEvent {
	sk := ""
	if stateKey != nil {
		sk = fmt.Sprintf(`,"state_key":%q`, *stateKey)
	}
	js := fmt.Sprintf(`{"auth_events":[],"content":{"body":"hello from %s","msgtype":"m.text"},"depth":%d,`+
		`"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin_server_ts":%d,"prev_events":[],`+
		`"room_id":%q,"sender":"@alice:hub.example"%s,"type":%q}`, id, depth, 1700000000000+depth, room, sk, typ)
	return store.NewEvent{Event: store.Event{
		EventID:  id,
		RoomID:   room,
		Type:     typ,
		StateKey: stateKey,
		Sender:   "@alice:hub.example",
		Depth:    depth,
		OriginTS: 1700000000000 + depth,
		JSON:     json.RawMessage(js),
	}}
}

func member(room, id, user, membership string, depth int64) store.NewEvent {
	e := ev(room, id, "m.room.member", ptr(user), depth)
	e.Membership = membership
	return e
}

func createRoom(t *testing.T, s store.Store, roomID string) {
	t.Helper()
	err := s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		return tx.CreateRoom(t.Context(), store.Room{RoomID: roomID, Version: "10", Creator: "@alice:hub.example"})
	})
	if err != nil {
		t.Fatalf("create room %s: %v", roomID, err)
	}
}

// insert stores evs in one WriteEvents and returns their positions.
func insert(t *testing.T, s store.Store, evs ...store.NewEvent) []int64 {
	t.Helper()
	var pos []int64
	err := s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		pos = pos[:0]
		for _, e := range evs {
			p, err := tx.InsertEvent(t.Context(), e)
			if err != nil {
				return err
			}
			pos = append(pos, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert events: %v", err)
	}
	return pos
}

func ids(evs []store.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

func positions(evs []store.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Pos
	}
	return out
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func maxPos(t *testing.T, s store.Store) int64 {
	t.Helper()
	p, err := s.MaxPos(t.Context())
	must(t, "MaxPos", err)
	return p
}

func strictlyIncreasing(p []int64) bool {
	for i := 1; i < len(p); i++ {
		if p[i] <= p[i-1] {
			return false
		}
	}
	return true
}

// Tests.

func testEmpty(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "Ping", s.Ping(ctx))
	if p := maxPos(t, s); p != 0 {
		t.Errorf("MaxPos of empty store = %d, want 0", p)
	}
	_, err := s.GetRoom(ctx, "!none:hub")
	wantErr(t, "GetRoom", err, store.ErrNotFound)
	_, err = s.EventByID(ctx, "$none")
	wantErr(t, "EventByID", err, store.ErrNotFound)
	_, err = s.CurrentStateEvent(ctx, "!none:hub", "m.room.create", "")
	wantErr(t, "CurrentStateEvent", err, store.ErrNotFound)
	_, err = s.TxnEvent(ctx, store.TxnKey{UserID: "@a:hub", DeviceID: "D", TxnID: "t"})
	wantErr(t, "TxnEvent", err, store.ErrNotFound)
	_, err = s.GetAccount(ctx, "nobody")
	wantErr(t, "GetAccount", err, store.ErrNotFound)
	_, err = s.DeviceByTokenHash(ctx, []byte("nope"))
	wantErr(t, "DeviceByTokenHash", err, store.ErrNotFound)
	_, err = s.GetMeta(ctx, "k")
	wantErr(t, "GetMeta", err, store.ErrNotFound)
	_, err = s.ResolveAlias(ctx, "#none:hub")
	wantErr(t, "ResolveAlias", err, store.ErrNotFound)
	_, err = s.GetAccountData(ctx, "@a:hub", "", "m.push_rules")
	wantErr(t, "GetAccountData", err, store.ErrNotFound)
	_, err = s.GetFilter(ctx, "@a:hub", "1")
	wantErr(t, "GetFilter", err, store.ErrNotFound)
	for name, f := range map[string]func() (int, error){
		"CurrentState":    func() (int, error) { v, err := s.CurrentState(ctx, "!none:hub"); return len(v), err },
		"UserMemberships": func() (int, error) { v, err := s.UserMemberships(ctx, "@a:hub"); return len(v), err },
		"RoomMembers":     func() (int, error) { v, err := s.RoomMembers(ctx, "!none:hub", ""); return len(v), err },
		"PendingOutbox":   func() (int, error) { v, err := s.PendingOutbox(ctx, 0, 10); return len(v), err },
		"ListDevices":     func() (int, error) { v, err := s.ListDevices(ctx, "nobody"); return len(v), err },
		"EventsByID":      func() (int, error) { v, err := s.EventsByID(ctx, []string{"$a", "$b"}); return len(v), err },
		"ReceiptsSince":   func() (int, error) { v, err := s.ReceiptsSince(ctx, []string{"!r:hub"}, 0, 100); return len(v), err },
		"AccountDataSince": func() (int, error) {
			v, err := s.AccountDataSince(ctx, "@a:hub", 0, 100)
			return len(v), err
		},
		"RoomEvents": func() (int, error) {
			v, err := s.RoomEvents(ctx, "!none:hub", 0, 100, 0, store.Forward)
			return len(v), err
		},
	} {
		if n, err := f(); err != nil || n != 0 {
			t.Errorf("%s on empty store: %d results, err %v; want 0, nil", name, n, err)
		}
	}
}

func testAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	created := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	alice := store.Account{Localpart: "alice", PasswordHash: "$2a$10$abc", Admin: true,
		DisplayName: "Alice", AvatarURL: "mxc://hub/a", CreatedAt: created}
	must(t, "CreateAccount", s.CreateAccount(ctx, alice))
	wantErr(t, "duplicate CreateAccount", s.CreateAccount(ctx, store.Account{Localpart: "alice", DisplayName: "Mallory"}), store.ErrExists)

	got, err := s.GetAccount(ctx, "alice")
	must(t, "GetAccount", err)
	if got.Localpart != "alice" || got.PasswordHash != alice.PasswordHash || !got.Admin ||
		got.DisplayName != "Alice" || got.AvatarURL != alice.AvatarURL || !got.CreatedAt.Equal(created) {
		t.Errorf("GetAccount = %+v, want %+v (the duplicate must not overwrite)", got, alice)
	}

	must(t, "CreateAccount bob", s.CreateAccount(ctx, store.Account{Localpart: "bob"}))
	bob, err := s.GetAccount(ctx, "bob")
	must(t, "GetAccount bob", err)
	if bob.Admin || bob.PasswordHash != "" || bob.CreatedAt.IsZero() {
		t.Errorf("bob = %+v, want non-admin, no password, a creation time", bob)
	}

	must(t, "SetDisplayName", s.SetDisplayName(ctx, "bob", "Bob B."))
	must(t, "SetAvatarURL", s.SetAvatarURL(ctx, "bob", "mxc://hub/b"))
	bob, err = s.GetAccount(ctx, "bob")
	must(t, "GetAccount bob", err)
	if bob.DisplayName != "Bob B." || bob.AvatarURL != "mxc://hub/b" {
		t.Errorf("bob after profile updates = %+v", bob)
	}
	if a, _ := s.GetAccount(ctx, "alice"); a == nil || a.DisplayName != "Alice" {
		t.Errorf("updating bob changed alice: %+v", a)
	}
	wantErr(t, "SetDisplayName missing", s.SetDisplayName(ctx, "carol", "C"), store.ErrNotFound)
	wantErr(t, "SetAvatarURL missing", s.SetAvatarURL(ctx, "carol", "mxc://x"), store.ErrNotFound)
	_, err = s.GetAccount(ctx, "carol")
	wantErr(t, "GetAccount missing", err, store.ErrNotFound)
}

func testDevices(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "CreateAccount", s.CreateAccount(ctx, store.Account{Localpart: "alice"}))
	must(t, "CreateAccount", s.CreateAccount(ctx, store.Account{Localpart: "bob"}))
	created := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	h1, h2, h3, hb := []byte("hash-1\x00\xff"), []byte("hash-2"), []byte("hash-3"), []byte("hash-bob")

	must(t, "CreateDevice D1", s.CreateDevice(ctx, store.Device{Localpart: "alice", DeviceID: "D1", DisplayName: "phone",
		TokenHash: h1, CreatedAt: created, LastSeen: created}))
	must(t, "CreateDevice D2", s.CreateDevice(ctx, store.Device{Localpart: "alice", DeviceID: "D2", TokenHash: h2}))
	must(t, "CreateDevice bob", s.CreateDevice(ctx, store.Device{Localpart: "bob", DeviceID: "D1", TokenHash: hb}))

	d, err := s.DeviceByTokenHash(ctx, h1)
	must(t, "DeviceByTokenHash", err)
	if d.Localpart != "alice" || d.DeviceID != "D1" || d.DisplayName != "phone" || !bytes.Equal(d.TokenHash, h1) ||
		!d.CreatedAt.Equal(created) || !d.LastSeen.Equal(created) {
		t.Errorf("DeviceByTokenHash = %+v", d)
	}

	wantErr(t, "device of missing account",
		s.CreateDevice(ctx, store.Device{Localpart: "carol", DeviceID: "X", TokenHash: []byte("c")}), store.ErrNotFound)
	wantErr(t, "reused token hash",
		s.CreateDevice(ctx, store.Device{Localpart: "alice", DeviceID: "D3", TokenHash: h2}), store.ErrExists)

	// Logging in again with the same device ID replaces the token.
	must(t, "replace D1", s.CreateDevice(ctx, store.Device{Localpart: "alice", DeviceID: "D1", DisplayName: "new phone", TokenHash: h3}))
	_, err = s.DeviceByTokenHash(ctx, h1)
	wantErr(t, "old token after replace", err, store.ErrNotFound)
	d, err = s.DeviceByTokenHash(ctx, h3)
	must(t, "new token after replace", err)
	if d.DeviceID != "D1" || d.DisplayName != "new phone" {
		t.Errorf("replaced device = %+v", d)
	}

	list, err := s.ListDevices(ctx, "alice")
	must(t, "ListDevices", err)
	if len(list) != 2 || list[0].DeviceID != "D1" || list[1].DeviceID != "D2" {
		t.Fatalf("ListDevices = %+v, want D1, D2", list)
	}

	seen := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	must(t, "TouchDevice", s.TouchDevice(ctx, "alice", "D2", seen))
	d, err = s.DeviceByTokenHash(ctx, h2)
	must(t, "DeviceByTokenHash D2", err)
	if !d.LastSeen.Equal(seen) {
		t.Errorf("LastSeen = %v, want %v", d.LastSeen, seen)
	}
	wantErr(t, "TouchDevice missing", s.TouchDevice(ctx, "alice", "nope", seen), store.ErrNotFound)

	must(t, "DeleteDevice", s.DeleteDevice(ctx, "alice", "D1"))
	_, err = s.DeviceByTokenHash(ctx, h3)
	wantErr(t, "deleted device", err, store.ErrNotFound)
	wantErr(t, "DeleteDevice again", s.DeleteDevice(ctx, "alice", "D1"), store.ErrNotFound)
	if list, _ := s.ListDevices(ctx, "alice"); len(list) != 1 {
		t.Errorf("after DeleteDevice: %d devices, want 1", len(list))
	}

	must(t, "DeleteAllDevices", s.DeleteAllDevices(ctx, "alice"))
	if list, _ := s.ListDevices(ctx, "alice"); len(list) != 0 {
		t.Errorf("after DeleteAllDevices: %d devices, want 0", len(list))
	}
	_, err = s.DeviceByTokenHash(ctx, h2)
	wantErr(t, "token after DeleteAllDevices", err, store.ErrNotFound)
	if _, err := s.DeviceByTokenHash(ctx, hb); err != nil {
		t.Errorf("DeleteAllDevices(alice) removed bob's device: %v", err)
	}
	must(t, "DeleteAllDevices with none", s.DeleteAllDevices(ctx, "alice"))
}

func testInsertEvent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room = "!r:hub"
	createRoom(t, s, room)
	r, err := s.GetRoom(ctx, room)
	must(t, "GetRoom", err)
	if r.RoomID != room || r.Version != "10" || r.Creator != "@alice:hub.example" || r.LastEventID != "" ||
		r.Depth != 0 || r.CreatedAt.IsZero() {
		t.Errorf("new room = %+v", r)
	}

	txn := &store.TxnKey{UserID: "@alice:hub.example", DeviceID: "D1", TxnID: "t1"}
	var dupErr error
	var pos []int64
	err = s.WriteEvents(ctx, func(tx store.EventTx) error {
		// A failed CreateRoom must leave the transaction usable.
		dupErr = tx.CreateRoom(ctx, store.Room{RoomID: room, Version: "11", Creator: "@mallory:x"})
		msg := ev(room, "$msg", "m.room.message", nil, 3)
		msg.Txn = txn
		for _, e := range []store.NewEvent{
			ev(room, "$create", "m.room.create", ptr(""), 1),
			member(room, "$join", "@alice:hub.example", "join", 2),
			msg,
		} {
			p, err := tx.InsertEvent(ctx, e)
			if err != nil {
				return err
			}
			pos = append(pos, p)
		}
		return nil
	})
	must(t, "WriteEvents", err)
	wantErr(t, "duplicate CreateRoom", dupErr, store.ErrExists)
	if len(pos) != 3 || !strictlyIncreasing(pos) || pos[0] <= 0 {
		t.Fatalf("positions = %v, want 3 strictly increasing positive", pos)
	}
	if p := maxPos(t, s); p != pos[2] {
		t.Errorf("MaxPos = %d, want %d", p, pos[2])
	}

	r, err = s.GetRoom(ctx, room)
	must(t, "GetRoom", err)
	if r.LastEventID != "$msg" || r.Depth != 3 || r.Version != "10" {
		t.Errorf("room head = %+v, want last $msg depth 3 version 10", r)
	}

	want := ev(room, "$msg", "m.room.message", nil, 3)
	got, err := s.EventByID(ctx, "$msg")
	must(t, "EventByID", err)
	if got.Pos != pos[2] || got.EventID != "$msg" || got.RoomID != room || got.Type != "m.room.message" ||
		got.StateKey != nil || got.Sender != want.Sender || got.Depth != 3 || got.OriginTS != want.OriginTS ||
		got.Membership != "" || !bytes.Equal(got.JSON, want.JSON) {
		t.Errorf("EventByID = %+v\nwant %+v at pos %d", got, want.Event, pos[2])
	}
	j, err := s.EventByID(ctx, "$join")
	must(t, "EventByID $join", err)
	if j.StateKey == nil || *j.StateKey != "@alice:hub.example" || j.Membership != "join" {
		t.Errorf("member event = %+v", j)
	}
	c, err := s.EventByID(ctx, "$create")
	must(t, "EventByID $create", err)
	if c.StateKey == nil || *c.StateKey != "" {
		t.Errorf("create event state key = %v, want empty string (not nil)", c.StateKey)
	}

	id, err := s.TxnEvent(ctx, *txn)
	must(t, "TxnEvent", err)
	if id != "$msg" {
		t.Errorf("TxnEvent = %q, want $msg", id)
	}
	// The transaction ID is scoped per device.
	_, err = s.TxnEvent(ctx, store.TxnKey{UserID: txn.UserID, DeviceID: "D2", TxnID: "t1"})
	wantErr(t, "TxnEvent other device", err, store.ErrNotFound)

	out, err := s.PendingOutbox(ctx, 0, 0)
	must(t, "PendingOutbox", err)
	if len(out) != 3 {
		t.Fatalf("outbox = %+v, want 3 entries", out)
	}
	for i, o := range out {
		if o.Pos != pos[i] || o.RoomID != room || o.EventID != []string{"$create", "$join", "$msg"}[i] {
			t.Errorf("outbox[%d] = %+v", i, o)
		}
	}

	st, err := s.CurrentState(ctx, room)
	must(t, "CurrentState", err)
	if !slices.Equal(ids(st), []string{"$create", "$join"}) {
		t.Errorf("CurrentState = %v, want $create, $join", ids(st))
	}

	// Into a room that does not exist: fails, commits nothing.
	before := maxPos(t, s)
	err = s.WriteEvents(ctx, func(tx store.EventTx) error {
		_, err := tx.InsertEvent(ctx, ev("!missing:hub", "$orphan", "m.room.message", nil, 1))
		return err
	})
	if err == nil {
		t.Errorf("InsertEvent into a missing room succeeded")
	}
	if _, err := s.EventByID(ctx, "$orphan"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("orphan event stored: %v", err)
	}
	if p := maxPos(t, s); p != before {
		t.Errorf("MaxPos moved from %d to %d by a failed write", before, p)
	}
}

func testJSONByteExact(t *testing.T, s store.Store) {
	ctx := t.Context()
	createRoom(t, s, "!r:hub")
	// Key order, whitespace, escapes and big numbers must survive: the
	// JSON is a signed PDU and is forwarded as stored.
	raw := json.RawMessage("{\"z\":1,  \"a\":\"\\u00e9\\u0000 caf\u00e9\",\n\"n\":12345678901234567890.50,\"e\":1e400,\"arr\":[ ]}")
	e := ev("!r:hub", "$j", "m.room.message", nil, 1)
	e.JSON = raw
	insert(t, s, e)
	got, err := s.EventByID(ctx, "$j")
	must(t, "EventByID", err)
	if !bytes.Equal(got.JSON, raw) {
		t.Errorf("JSON changed:\n got %q\nwant %q", got.JSON, raw)
	}
	content := json.RawMessage(`{"b": 2, "a": [1,2,3]}`)
	_, err = s.PutAccountData(ctx, store.AccountData{UserID: "@a:hub", Type: "x.t", Content: content})
	must(t, "PutAccountData", err)
	d, err := s.GetAccountData(ctx, "@a:hub", "", "x.t")
	must(t, "GetAccountData", err)
	if !bytes.Equal(d.Content, content) {
		t.Errorf("account data changed: %q, want %q", d.Content, content)
	}
}

func testRoomEvents(t *testing.T, s store.Store) {
	ctx := t.Context()
	const a, b = "!a:hub", "!b:hub"
	createRoom(t, s, a)
	createRoom(t, s, b)
	var evs []store.NewEvent
	for i := range 10 {
		evs = append(evs, ev(a, fmt.Sprintf("$a%d", i), "m.room.message", nil, int64(i+1)))
		evs = append(evs, ev(b, fmt.Sprintf("$b%d", i), "m.room.message", nil, int64(i+1)))
	}
	all := insert(t, s, evs...)
	var p []int64 // positions of room a's events
	for i := 0; i < len(all); i += 2 {
		p = append(p, all[i])
	}
	top := maxPos(t, s)

	cases := []struct {
		name     string
		from, to int64
		limit    int
		dir      store.Direction
		want     []int64
	}{
		{"all forward", 0, top, 0, store.Forward, p},
		{"negative limit is no limit", 0, top, -1, store.Forward, p},
		{"all backward", 0, top, 0, store.Backward, reversed(p)},
		{"forward window", p[2], p[7], 3, store.Forward, p[3:6]},
		{"backward window", p[2], p[7], 3, store.Backward, []int64{p[7], p[6], p[5]}},
		{"from is exclusive, to inclusive", p[4], p[5], 0, store.Forward, p[5:6]},
		{"backward from the top", p[5], top, 0, store.Backward, reversed(p[6:])},
		{"limit larger than range", p[7], top, 100, store.Forward, p[8:]},
		{"empty range", p[3], p[3], 10, store.Forward, nil},
		{"nothing after the last", top, top + 100, 10, store.Forward, nil},
		{"between own events", p[0], p[1] - 1, 0, store.Forward, nil},
	}
	for _, c := range cases {
		got, err := s.RoomEvents(ctx, a, c.from, c.to, c.limit, c.dir)
		must(t, c.name, err)
		if !slices.Equal(positions(got), c.want) {
			t.Errorf("%s: RoomEvents(%d, %d, %d) = %v, want %v", c.name, c.from, c.to, c.limit, positions(got), c.want)
		}
		for _, e := range got {
			if e.RoomID != a || !strings.HasPrefix(e.EventID, "$a") || len(e.JSON) == 0 {
				t.Errorf("%s: foreign or empty event %+v", c.name, e)
			}
		}
	}
}

func reversed(p []int64) []int64 {
	out := slices.Clone(p)
	slices.Reverse(out)
	return out
}

func testEventsByID(t *testing.T, s store.Store) {
	ctx := t.Context()
	createRoom(t, s, "!r:hub")
	pos := insert(t, s,
		ev("!r:hub", "$1", "m.room.message", nil, 1),
		ev("!r:hub", "$2", "m.room.message", nil, 2),
		ev("!r:hub", "$3", "m.room.message", nil, 3))
	got, err := s.EventsByID(ctx, []string{"$3", "$missing", "$1"})
	must(t, "EventsByID", err)
	if !slices.Equal(ids(got), []string{"$1", "$3"}) || got[0].Pos != pos[0] || got[1].Pos != pos[2] {
		t.Errorf("EventsByID = %v at %v, want $1, $3 in position order", ids(got), positions(got))
	}
	got, err = s.EventsByID(ctx, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("EventsByID(nil) = %v, %v", got, err)
	}
}

func testStateAndMemberships(t *testing.T, s store.Store) {
	ctx := t.Context()
	const a, b = "!a:hub", "!b:hub"
	const alice, bob = "@alice:hub", "@bob:hub"
	createRoom(t, s, a)
	createRoom(t, s, b)
	p1 := insert(t, s,
		ev(a, "$a-create", "m.room.create", ptr(""), 1),
		member(a, "$a-alice-join", alice, "join", 2),
	)
	p2 := insert(t, s,
		ev(a, "$a-topic1", "m.room.topic", ptr(""), 3),
		ev(a, "$a-msg", "m.room.message", nil, 4),
		member(a, "$a-bob", bob, "invite", 5),
		ev(a, "$a-topic2", "m.room.topic", ptr(""), 6),
		ev(b, "$b-create", "m.room.create", ptr(""), 1),
		member(b, "$b-alice", alice, "invite", 2),
	)
	p3 := insert(t, s,
		member(a, "$a-bob-join", bob, "join", 7),
		member(a, "$a-alice-leave", alice, "leave", 8),
	)

	st, err := s.CurrentState(ctx, a)
	must(t, "CurrentState", err)
	wantIDs := []string{"$a-create", "$a-topic2", "$a-bob-join", "$a-alice-leave"}
	if !slices.Equal(ids(st), wantIDs) {
		t.Errorf("CurrentState(a) = %v, want %v", ids(st), wantIDs)
	}
	for _, e := range st {
		if e.StateKey == nil || len(e.JSON) == 0 || e.RoomID != a {
			t.Errorf("CurrentState returned incomplete event %+v", e)
		}
	}
	topic, err := s.CurrentStateEvent(ctx, a, "m.room.topic", "")
	must(t, "CurrentStateEvent topic", err)
	if topic.EventID != "$a-topic2" || topic.Pos != p2[3] {
		t.Errorf("topic = %s at %d, want $a-topic2 at %d", topic.EventID, topic.Pos, p2[3])
	}
	m, err := s.CurrentStateEvent(ctx, a, "m.room.member", alice)
	must(t, "CurrentStateEvent member", err)
	if m.EventID != "$a-alice-leave" || m.Membership != "leave" {
		t.Errorf("alice's member event = %s (%s)", m.EventID, m.Membership)
	}
	_, err = s.CurrentStateEvent(ctx, a, "m.room.topic", "x")
	wantErr(t, "CurrentStateEvent other key", err, store.ErrNotFound)
	_, err = s.CurrentStateEvent(ctx, b, "m.room.topic", "")
	wantErr(t, "CurrentStateEvent other room", err, store.ErrNotFound)

	between, err := s.StateEventsBetween(ctx, a, p1[1], p3[0])
	must(t, "StateEventsBetween", err)
	if want := []string{"$a-topic1", "$a-bob", "$a-topic2", "$a-bob-join"}; !slices.Equal(ids(between), want) {
		t.Errorf("StateEventsBetween = %v, want %v", ids(between), want)
	}
	if !strictlyIncreasing(positions(between)) {
		t.Errorf("StateEventsBetween not ascending: %v", positions(between))
	}

	ms, err := s.UserMemberships(ctx, alice)
	must(t, "UserMemberships", err)
	got := map[string]store.Membership{}
	for _, m := range ms {
		got[m.RoomID] = m
	}
	if len(ms) != 2 ||
		got[a] != (store.Membership{RoomID: a, UserID: alice, Membership: "leave", EventID: "$a-alice-leave", Pos: p3[1]}) ||
		got[b] != (store.Membership{RoomID: b, UserID: alice, Membership: "invite", EventID: "$b-alice", Pos: p2[5]}) {
		t.Errorf("UserMemberships(alice) = %+v", ms)
	}
	ms, err = s.UserMemberships(ctx, "@carol:hub")
	if err != nil || len(ms) != 0 {
		t.Errorf("UserMemberships(carol) = %v, %v; want none", ms, err)
	}

	all, err := s.RoomMembers(ctx, a, "")
	must(t, "RoomMembers", err)
	var users []string
	for _, m := range all {
		users = append(users, m.UserID+"="+m.Membership)
	}
	slices.Sort(users)
	if want := []string{alice + "=leave", bob + "=join"}; !slices.Equal(users, want) {
		t.Errorf("RoomMembers(a) = %v, want %v", users, want)
	}
	joined, err := s.RoomMembers(ctx, a, "join")
	must(t, "RoomMembers join", err)
	for _, m := range joined {
		if m.Membership != "join" || m.RoomID != a {
			t.Errorf("RoomMembers(join) returned %+v", m)
		}
	}
	if len(joined) != 1 || joined[0].UserID != bob || joined[0].EventID != "$a-bob-join" || joined[0].Pos != p3[0] {
		t.Errorf("RoomMembers(join) = %+v, want bob only", joined)
	}
	if left, _ := s.RoomMembers(ctx, a, "leave"); len(left) != 1 || left[0].UserID != alice || left[0].EventID != "$a-alice-leave" {
		t.Errorf("RoomMembers(leave) = %+v", left)
	}
	if inv, _ := s.RoomMembers(ctx, b, "invite"); len(inv) != 1 || inv[0].UserID != alice {
		t.Errorf("RoomMembers(b, invite) = %+v", inv)
	}
}

func testRollback(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room = "!r:hub"
	createRoom(t, s, room)
	insert(t, s, ev(room, "$keep", "m.room.message", nil, 1))
	before := maxPos(t, s)
	boom := errors.New("boom")
	txn := store.TxnKey{UserID: "@a:hub", DeviceID: "D", TxnID: "t"}
	err := s.WriteEvents(ctx, func(tx store.EventTx) error {
		e := ev(room, "$gone", "m.room.topic", ptr(""), 2)
		e.Txn = &txn
		if _, err := tx.InsertEvent(ctx, e); err != nil {
			return err
		}
		if err := tx.CreateRoom(ctx, store.Room{RoomID: "!gone:hub", Version: "10", Creator: "@a:hub"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteEvents = %v, want fn's error", err)
	}
	_, err = s.EventByID(ctx, "$gone")
	wantErr(t, "rolled-back event", err, store.ErrNotFound)
	_, err = s.GetRoom(ctx, "!gone:hub")
	wantErr(t, "rolled-back room", err, store.ErrNotFound)
	_, err = s.TxnEvent(ctx, txn)
	wantErr(t, "rolled-back txn", err, store.ErrNotFound)
	_, err = s.CurrentStateEvent(ctx, room, "m.room.topic", "")
	wantErr(t, "rolled-back state", err, store.ErrNotFound)
	if r, _ := s.GetRoom(ctx, room); r == nil || r.LastEventID != "$keep" || r.Depth != 1 {
		t.Errorf("room head after rollback = %+v", r)
	}
	if out, _ := s.PendingOutbox(ctx, 0, 0); len(out) != 1 {
		t.Errorf("outbox after rollback = %+v, want only $keep", out)
	}
	if p := maxPos(t, s); p != before {
		t.Errorf("MaxPos after rollback = %d, want %d", p, before)
	}
	// The store stays usable and positions keep increasing.
	p := insert(t, s, ev(room, "$after", "m.room.message", nil, 2))
	if p[0] <= before {
		t.Errorf("position after rollback %d, not above %d", p[0], before)
	}
}

func testFailedInsertNeverCommits(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room = "!r:hub"
	createRoom(t, s, room)
	insert(t, s, ev(room, "$dup", "m.room.message", nil, 1))
	before := maxPos(t, s)
	// fn ignores the InsertEvent error; the store must not commit the
	// other event of the transaction anyway.
	err := s.WriteEvents(ctx, func(tx store.EventTx) error {
		_, _ = tx.InsertEvent(ctx, ev(room, "$fresh", "m.room.message", nil, 2))
		_, _ = tx.InsertEvent(ctx, ev(room, "$dup", "m.room.message", nil, 3))
		return nil
	})
	if err == nil {
		t.Errorf("WriteEvents committed a transaction with a failed InsertEvent")
	}
	_, err = s.EventByID(ctx, "$fresh")
	wantErr(t, "event of failed transaction", err, store.ErrNotFound)
	if p := maxPos(t, s); p != before {
		t.Errorf("MaxPos = %d, want %d", p, before)
	}
	if r, _ := s.GetRoom(ctx, room); r == nil || r.LastEventID != "$dup" {
		t.Errorf("room head = %+v, want $dup", r)
	}
}

func testReadYourWritesInTx(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room = "!r:hub"
	txn := store.TxnKey{UserID: "@a:hub", DeviceID: "D", TxnID: "t"}
	err := s.WriteEvents(ctx, func(tx store.EventTx) error {
		if err := tx.CreateRoom(ctx, store.Room{RoomID: room, Version: "10", Creator: "@a:hub"}); err != nil {
			return err
		}
		r, err := tx.GetRoom(ctx, room)
		if err != nil {
			return fmt.Errorf("GetRoom in tx after CreateRoom: %w", err)
		}
		if r.Depth != 0 {
			t.Errorf("new room depth %d", r.Depth)
		}
		if _, err := tx.TxnEvent(ctx, txn); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TxnEvent before insert: %v, want ErrNotFound", err)
		}
		e := ev(room, "$create", "m.room.create", ptr(""), 1)
		e.Txn = &txn
		p, err := tx.InsertEvent(ctx, e)
		if err != nil {
			return err
		}
		r, err = tx.GetRoom(ctx, room)
		if err != nil {
			return err
		}
		if r.LastEventID != "$create" || r.Depth != 1 {
			t.Errorf("GetRoom in tx = %+v, want head $create depth 1", r)
		}
		st, err := tx.CurrentState(ctx, room)
		if err != nil {
			return err
		}
		if len(st) != 1 || st[0].EventID != "$create" || st[0].Pos != p {
			t.Errorf("CurrentState in tx = %+v", st)
		}
		if id, err := tx.TxnEvent(ctx, txn); err != nil || id != "$create" {
			t.Errorf("TxnEvent in tx = %q, %v", id, err)
		}
		// Nothing is visible outside before commit.
		if _, err := s.EventByID(ctx, "$create"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("uncommitted event visible outside the transaction: %v", err)
		}
		if _, err := s.GetRoom(ctx, room); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("uncommitted room visible outside the transaction: %v", err)
		}
		if m, err := s.MaxPos(ctx); err != nil || m != 0 {
			t.Errorf("MaxPos during transaction = %d, %v; want 0", m, err)
		}
		return nil
	})
	must(t, "WriteEvents", err)
	if _, err := s.EventByID(ctx, "$create"); err != nil {
		t.Errorf("event after commit: %v", err)
	}
}

func testSharedPositions(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room = "!r:hub"
	createRoom(t, s, room)
	var seq []int64
	seq = append(seq, insert(t, s, ev(room, "$1", "m.room.message", nil, 1))...)
	p, err := s.PutAccountData(ctx, store.AccountData{UserID: "@a:hub", Type: "m.push_rules", Content: json.RawMessage(`{}`)})
	must(t, "PutAccountData", err)
	seq = append(seq, p)
	p, err = s.PutReceipt(ctx, store.Receipt{RoomID: room, UserID: "@a:hub", Type: "m.read", EventID: "$1", TS: 5})
	must(t, "PutReceipt", err)
	seq = append(seq, p)
	seq = append(seq, insert(t, s, ev(room, "$2", "m.room.message", nil, 2), ev(room, "$3", "m.room.message", nil, 3))...)
	p, err = s.PutAccountData(ctx, store.AccountData{UserID: "@a:hub", Type: "m.push_rules", Content: json.RawMessage(`{"v":2}`)})
	must(t, "PutAccountData again", err)
	seq = append(seq, p)
	if !strictlyIncreasing(seq) || seq[0] <= 0 {
		t.Errorf("positions across events, account data and receipts = %v, want strictly increasing", seq)
	}
	if m := maxPos(t, s); m != seq[len(seq)-1] {
		t.Errorf("MaxPos = %d, want %d", m, seq[len(seq)-1])
	}
}

func testAccountData(t *testing.T, s store.Store) {
	ctx := t.Context()
	const alice, bob = "@alice:hub", "@bob:hub"
	put := func(d store.AccountData) int64 {
		t.Helper()
		p, err := s.PutAccountData(ctx, d)
		must(t, "PutAccountData", err)
		return p
	}
	pGlobal := put(store.AccountData{UserID: alice, Type: "m.direct", Content: json.RawMessage(`{"v":1}`)})
	pRoom := put(store.AccountData{UserID: alice, RoomID: "!r:hub", Type: "m.direct", Content: json.RawMessage(`{"room":1}`)})
	pBob := put(store.AccountData{UserID: bob, Type: "m.direct", Content: json.RawMessage(`{"bob":1}`)})
	pOther := put(store.AccountData{UserID: alice, Type: "m.push_rules", Content: json.RawMessage(`{}`)})
	if !strictlyIncreasing([]int64{pGlobal, pRoom, pBob, pOther}) {
		t.Errorf("positions %v not increasing", []int64{pGlobal, pRoom, pBob, pOther})
	}

	g, err := s.GetAccountData(ctx, alice, "", "m.direct")
	must(t, "GetAccountData global", err)
	if string(g.Content) != `{"v":1}` || g.Pos != pGlobal || g.RoomID != "" || g.UserID != alice || g.Type != "m.direct" {
		t.Errorf("global entry = %+v", g)
	}
	r, err := s.GetAccountData(ctx, alice, "!r:hub", "m.direct")
	must(t, "GetAccountData room", err)
	if string(r.Content) != `{"room":1}` || r.Pos != pRoom || r.RoomID != "!r:hub" {
		t.Errorf("room entry = %+v", r)
	}
	_, err = s.GetAccountData(ctx, alice, "!other:hub", "m.direct")
	wantErr(t, "GetAccountData other room", err, store.ErrNotFound)

	// Upsert: same key, new content, new position.
	pNew := put(store.AccountData{UserID: alice, Type: "m.direct", Content: json.RawMessage(`{"v":2}`)})
	if pNew <= pOther {
		t.Errorf("upsert position %d not above %d", pNew, pOther)
	}
	g, err = s.GetAccountData(ctx, alice, "", "m.direct")
	must(t, "GetAccountData after upsert", err)
	if string(g.Content) != `{"v":2}` || g.Pos != pNew {
		t.Errorf("after upsert = %+v", g)
	}

	since, err := s.AccountDataSince(ctx, alice, 0, pNew)
	must(t, "AccountDataSince", err)
	var got []string
	for _, d := range since {
		got = append(got, fmt.Sprintf("%s|%s|%s", d.RoomID, d.Type, d.Content))
	}
	want := []string{`!r:hub|m.direct|{"room":1}`, `|m.push_rules|{}`, `|m.direct|{"v":2}`}
	if !slices.Equal(got, want) {
		t.Errorf("AccountDataSince(0) = %v, want %v", got, want)
	}
	since, err = s.AccountDataSince(ctx, alice, pRoom, pOther)
	must(t, "AccountDataSince window", err)
	if len(since) != 1 || since[0].Type != "m.push_rules" {
		t.Errorf("AccountDataSince(%d, %d) = %+v, want only m.push_rules", pRoom, pOther, since)
	}
	since, err = s.AccountDataSince(ctx, bob, 0, pNew)
	must(t, "AccountDataSince bob", err)
	if len(since) != 1 || since[0].UserID != bob || since[0].Pos != pBob {
		t.Errorf("AccountDataSince(bob) = %+v", since)
	}
}

func testReceipts(t *testing.T, s store.Store) {
	ctx := t.Context()
	put := func(r store.Receipt) int64 {
		t.Helper()
		p, err := s.PutReceipt(ctx, r)
		must(t, "PutReceipt", err)
		return p
	}
	p1 := put(store.Receipt{RoomID: "!a:hub", UserID: "@u:hub", Type: "m.read", EventID: "$1", TS: 10})
	p2 := put(store.Receipt{RoomID: "!b:hub", UserID: "@u:hub", Type: "m.read", EventID: "$b", TS: 11})
	p3 := put(store.Receipt{RoomID: "!a:hub", UserID: "@u:hub", Type: "m.read.private", EventID: "$1", TS: 12})
	p4 := put(store.Receipt{RoomID: "!a:hub", UserID: "@u:hub", Type: "m.read", EventID: "$2", TS: 13}) // replaces p1
	if !strictlyIncreasing([]int64{p1, p2, p3, p4}) {
		t.Errorf("receipt positions %v not increasing", []int64{p1, p2, p3, p4})
	}
	got, err := s.ReceiptsSince(ctx, []string{"!a:hub"}, 0, p4)
	must(t, "ReceiptsSince", err)
	want := []store.Receipt{
		{RoomID: "!a:hub", UserID: "@u:hub", Type: "m.read.private", EventID: "$1", TS: 12, Pos: p3},
		{RoomID: "!a:hub", UserID: "@u:hub", Type: "m.read", EventID: "$2", TS: 13, Pos: p4},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ReceiptsSince(a) = %+v\nwant %+v", got, want)
	}
	got, err = s.ReceiptsSince(ctx, []string{"!a:hub", "!b:hub", "!c:hub"}, p1, p3)
	must(t, "ReceiptsSince window", err)
	if len(got) != 2 || got[0].Pos != p2 || got[1].Pos != p3 {
		t.Errorf("ReceiptsSince(a,b; %d, %d] = %+v", p1, p3, got)
	}
	got, err = s.ReceiptsSince(ctx, nil, 0, p4)
	if err != nil || len(got) != 0 {
		t.Errorf("ReceiptsSince(no rooms) = %+v, %v", got, err)
	}
}

func testFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	f1, f2 := json.RawMessage(`{"room":{"timeline":{"limit":10}}}`), json.RawMessage(`{"presence":{"not_types":["*"]}}`)
	id1, err := s.PutFilter(ctx, "@a:hub", f1)
	must(t, "PutFilter", err)
	id2, err := s.PutFilter(ctx, "@a:hub", f2)
	must(t, "PutFilter", err)
	idB, err := s.PutFilter(ctx, "@b:hub", f1)
	must(t, "PutFilter", err)
	for _, id := range []string{id1, id2, idB} {
		if id == "" || len(id) > 32 || strings.HasPrefix(id, "{") {
			t.Errorf("filter ID %q: want a short non-empty string not starting with {", id)
		}
	}
	if id1 == id2 {
		t.Errorf("two filters of one user share ID %q", id1)
	}
	got, err := s.GetFilter(ctx, "@a:hub", id1)
	must(t, "GetFilter", err)
	if !bytes.Equal(got, f1) {
		t.Errorf("GetFilter = %s, want %s", got, f1)
	}
	got, err = s.GetFilter(ctx, "@a:hub", id2)
	must(t, "GetFilter", err)
	if !bytes.Equal(got, f2) {
		t.Errorf("GetFilter = %s, want %s", got, f2)
	}
	if idB != id1 && idB != id2 {
		_, err = s.GetFilter(ctx, "@a:hub", idB)
		wantErr(t, "another user's filter", err, store.ErrNotFound)
	}
	_, err = s.GetFilter(ctx, "@b:hub", id2)
	if id2 != idB {
		wantErr(t, "another user's filter", err, store.ErrNotFound)
	}
	_, err = s.GetFilter(ctx, "@a:hub", "not-an-id")
	wantErr(t, "malformed filter ID", err, store.ErrNotFound)
}

func testAliases(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "PutAlias", s.PutAlias(ctx, "#room:hub", "!r:hub", "@a:hub"))
	wantErr(t, "duplicate PutAlias", s.PutAlias(ctx, "#room:hub", "!other:hub", "@b:hub"), store.ErrExists)
	id, err := s.ResolveAlias(ctx, "#room:hub")
	must(t, "ResolveAlias", err)
	if id != "!r:hub" {
		t.Errorf("ResolveAlias = %q, want !r:hub", id)
	}
	must(t, "DeleteAlias", s.DeleteAlias(ctx, "#room:hub"))
	_, err = s.ResolveAlias(ctx, "#room:hub")
	wantErr(t, "ResolveAlias after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteAlias again", s.DeleteAlias(ctx, "#room:hub"), store.ErrNotFound)
	must(t, "PutAlias after delete", s.PutAlias(ctx, "#room:hub", "!other:hub", "@b:hub"))
	if id, _ := s.ResolveAlias(ctx, "#room:hub"); id != "!other:hub" {
		t.Errorf("re-created alias resolves to %q", id)
	}
}

func testOutbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	createRoom(t, s, "!r:hub")
	var evs []store.NewEvent
	for i := range 5 {
		evs = append(evs, ev("!r:hub", fmt.Sprintf("$%d", i), "m.room.message", nil, int64(i+1)))
	}
	pos := insert(t, s, evs...)
	// Account data and receipts do not go to the outbox.
	_, err := s.PutReceipt(ctx, store.Receipt{RoomID: "!r:hub", UserID: "@a:hub", Type: "m.read", EventID: "$0"})
	must(t, "PutReceipt", err)

	first, err := s.PendingOutbox(ctx, 0, 2)
	must(t, "PendingOutbox(2)", err)
	if len(first) != 2 || first[0].Pos != pos[0] || first[1].Pos != pos[1] || first[0].EventID != "$0" || first[1].RoomID != "!r:hub" {
		t.Errorf("PendingOutbox(2) = %+v", first)
	}
	all, err := s.PendingOutbox(ctx, 0, 0)
	must(t, "PendingOutbox(0)", err)
	if len(all) != 5 {
		t.Errorf("PendingOutbox(0) = %d entries, want 5", len(all))
	}
	must(t, "DeleteOutbox", s.DeleteOutbox(ctx, []int64{pos[0], pos[1], pos[3]}))
	must(t, "DeleteOutbox none", s.DeleteOutbox(ctx, nil))
	after, err := s.PendingOutbox(ctx, pos[1], 0)
	must(t, "PendingOutbox after", err)
	if len(after) != 2 || after[0].Pos != pos[2] || after[1].Pos != pos[4] {
		t.Errorf("PendingOutbox(after %d) = %+v, want from %d", pos[1], after, pos[2])
	}
	rest, err := s.PendingOutbox(ctx, 0, 10)
	must(t, "PendingOutbox", err)
	var got []int64
	for _, o := range rest {
		got = append(got, o.Pos)
	}
	if want := []int64{pos[2], pos[4]}; !slices.Equal(got, want) {
		t.Errorf("outbox after delete = %v, want %v", got, want)
	}
	if _, err := s.EventByID(ctx, "$0"); err != nil {
		t.Errorf("DeleteOutbox removed the event: %v", err)
	}
}

func testMeta(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetMeta(ctx, "schema.note")
	wantErr(t, "GetMeta missing", err, store.ErrNotFound)
	must(t, "PutMeta", s.PutMeta(ctx, "schema.note", "v1"))
	must(t, "PutMeta other", s.PutMeta(ctx, "other", ""))
	if v, err := s.GetMeta(ctx, "schema.note"); err != nil || v != "v1" {
		t.Errorf("GetMeta = %q, %v", v, err)
	}
	must(t, "PutMeta overwrite", s.PutMeta(ctx, "schema.note", "v2"))
	if v, err := s.GetMeta(ctx, "schema.note"); err != nil || v != "v2" {
		t.Errorf("GetMeta after overwrite = %q, %v", v, err)
	}
	if v, err := s.GetMeta(ctx, "other"); err != nil || v != "" {
		t.Errorf("GetMeta(other) = %q, %v; want empty value", v, err)
	}
}

// testLargeTransaction writes more events in one WriteEvents than a
// dialect would reasonably buffer, with state keys rewritten throughout.
func testLargeTransaction(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room, n = "!r:hub", 2500
	createRoom(t, s, room)
	var evs []store.NewEvent
	lastTopic := ""
	for i := range n {
		id := fmt.Sprintf("$%d", i)
		switch {
		case i%10 == 0:
			evs = append(evs, ev(room, id, "m.room.topic", ptr(""), int64(i+1)))
			lastTopic = id
		case i%7 == 0:
			evs = append(evs, member(room, id, fmt.Sprintf("@u%d:hub", i%3), []string{"join", "leave"}[i%2], int64(i+1)))
		default:
			e := ev(room, id, "m.room.message", nil, int64(i+1))
			e.Txn = &store.TxnKey{UserID: "@alice:hub.example", DeviceID: "D", TxnID: id}
			evs = append(evs, e)
		}
	}
	pos := insert(t, s, evs...)
	if len(pos) != n || !strictlyIncreasing(pos) {
		t.Fatalf("%d positions, strictly increasing: %v", len(pos), strictlyIncreasing(pos))
	}
	if m := maxPos(t, s); m != pos[n-1] {
		t.Errorf("MaxPos = %d, want %d", m, pos[n-1])
	}
	got, err := s.RoomEvents(ctx, room, 0, pos[n-1], 0, store.Forward)
	must(t, "RoomEvents", err)
	if !slices.Equal(positions(got), pos) {
		t.Errorf("stored positions differ from the returned ones")
	}
	r, err := s.GetRoom(ctx, room)
	must(t, "GetRoom", err)
	if r.Depth != n || r.LastEventID != fmt.Sprintf("$%d", n-1) {
		t.Errorf("room head = %s depth %d", r.LastEventID, r.Depth)
	}
	topic, err := s.CurrentStateEvent(ctx, room, "m.room.topic", "")
	must(t, "CurrentStateEvent", err)
	if topic.EventID != lastTopic {
		t.Errorf("topic = %s, want %s", topic.EventID, lastTopic)
	}
	members, err := s.RoomMembers(ctx, room, "")
	must(t, "RoomMembers", err)
	if len(members) != 3 {
		t.Errorf("%d members, want 3", len(members))
	}
	for _, m := range members {
		e, err := s.EventByID(ctx, m.EventID)
		must(t, "EventByID", err)
		// The member's current event is the last one written for that key.
		for i := n - 1; i >= 0; i-- {
			if evs[i].StateKey != nil && *evs[i].StateKey == m.UserID {
				if evs[i].EventID != e.EventID || evs[i].Membership != m.Membership {
					t.Errorf("%s: current %s (%s), want %s (%s)", m.UserID, e.EventID, m.Membership, evs[i].EventID, evs[i].Membership)
				}
				break
			}
		}
	}
	if id, err := s.TxnEvent(ctx, store.TxnKey{UserID: "@alice:hub.example", DeviceID: "D", TxnID: "$2498"}); err != nil || id != "$2498" {
		t.Errorf("TxnEvent = %q, %v", id, err)
	}
	if out, _ := s.PendingOutbox(ctx, 0, 0); len(out) != n {
		t.Errorf("outbox has %d entries, want %d", len(out), n)
	}
}

// testConcurrentWriters has writers race on one room, each reading the
// room head and appending at depth+1, while other goroutines write account
// data and receipts. Serialized WriteEvents is what keeps the depths a
// gapless sequence in position order.
func testConcurrentWriters(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room = "!r:hub"
	const writers, txPerWriter, perTx = 8, 15, 3
	createRoom(t, s, room)

	var mu sync.Mutex
	var allPos []int64
	record := func(p ...int64) {
		mu.Lock()
		allPos = append(allPos, p...)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	for w := range writers {
		wg.Go(func() {
			for i := range txPerWriter {
				var got []int64
				err := s.WriteEvents(ctx, func(tx store.EventTx) error {
					got = got[:0]
					r, err := tx.GetRoom(ctx, room)
					if err != nil {
						return err
					}
					for k := range perTx {
						id := fmt.Sprintf("$w%d-%d-%d", w, i, k)
						p, err := tx.InsertEvent(ctx, ev(room, id, "m.room.message", nil, r.Depth+int64(k)+1))
						if err != nil {
							return err
						}
						got = append(got, p)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				record(got...)
			}
		})
	}
	const sideWrites = 30
	wg.Go(func() {
		for i := range sideWrites {
			p, err := s.PutReceipt(ctx, store.Receipt{RoomID: room, UserID: fmt.Sprintf("@u%d:hub", i%3), Type: "m.read", EventID: "$x"})
			if err != nil {
				errs <- err
				return
			}
			record(p)
		}
	})
	wg.Go(func() {
		for i := range sideWrites {
			p, err := s.PutAccountData(ctx, store.AccountData{UserID: "@u:hub", Type: fmt.Sprintf("t%d", i%4), Content: json.RawMessage(`{}`)})
			if err != nil {
				errs <- err
				return
			}
			record(p)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent write: %v", err)
	}

	total := writers * txPerWriter * perTx
	if want := total + 2*sideWrites; len(allPos) != want {
		t.Fatalf("%d positions recorded, want %d", len(allPos), want)
	}
	slices.Sort(allPos)
	if len(slices.Compact(slices.Clone(allPos))) != len(allPos) {
		t.Errorf("duplicate positions handed out")
	}
	if m := maxPos(t, s); m != allPos[len(allPos)-1] {
		t.Errorf("MaxPos = %d, want the highest position %d", m, allPos[len(allPos)-1])
	}

	evs, err := s.RoomEvents(ctx, room, 0, maxPos(t, s), 0, store.Forward)
	must(t, "RoomEvents", err)
	if len(evs) != total {
		t.Fatalf("%d events stored, want %d", len(evs), total)
	}
	for i, e := range evs {
		if e.Depth != int64(i+1) {
			t.Fatalf("event %d (%s) at pos %d has depth %d, want %d: writers interleaved", i, e.EventID, e.Pos, e.Depth, i+1)
		}
	}
	r, err := s.GetRoom(ctx, room)
	must(t, "GetRoom", err)
	if r.Depth != int64(total) || r.LastEventID != evs[len(evs)-1].EventID {
		t.Errorf("room head = %s depth %d, want %s depth %d", r.LastEventID, r.Depth, evs[len(evs)-1].EventID, total)
	}
	if out, _ := s.PendingOutbox(ctx, 0, 0); len(out) != total {
		t.Errorf("outbox has %d entries, want %d", len(out), total)
	}
}

// testCommitOrderVisibility checks the property /sync tokens rely on: once
// a reader sees MaxPos = N, every event at or below N that will ever exist
// is already visible.
func testCommitOrderVisibility(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room = "!r:hub"
	createRoom(t, s, room)
	type snapshot struct {
		max   int64
		count int
	}
	var snaps []snapshot
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				readerDone <- nil
				return
			default:
			}
			m, err := s.MaxPos(ctx)
			if err != nil {
				readerDone <- err
				return
			}
			evs, err := s.RoomEvents(ctx, room, 0, m, 0, store.Forward)
			if err != nil {
				readerDone <- err
				return
			}
			snaps = append(snaps, snapshot{m, len(evs)})
		}
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				err := s.WriteEvents(ctx, func(tx store.EventTx) error {
					for k := range 2 {
						if _, err := tx.InsertEvent(ctx, ev(room, fmt.Sprintf("$%d-%d-%d", w, i, k), "m.room.message", nil, 1)); err != nil {
							return err
						}
					}
					if i%5 == 0 {
						return errors.New("roll back this one")
					}
					return nil
				})
				if err != nil && i%5 != 0 {
					t.Errorf("WriteEvents: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-readerDone; err != nil {
		t.Fatalf("reader: %v", err)
	}
	final, err := s.RoomEvents(ctx, room, 0, maxPos(t, s), 0, store.Forward)
	must(t, "RoomEvents", err)
	if want := 4 * 16 * 2; len(final) != want {
		t.Fatalf("%d events committed, want %d", len(final), want)
	}
	if len(snaps) < 2 {
		t.Logf("reader took only %d snapshots", len(snaps))
	}
	for _, sn := range snaps {
		n, _ := slices.BinarySearchFunc(final, sn.max+1, func(e store.Event, p int64) int {
			switch {
			case e.Pos < p:
				return -1
			case e.Pos > p:
				return 1
			}
			return 0
		})
		if n != sn.count {
			t.Fatalf("reader saw MaxPos %d with %d events at or below it, but %d exist: a lower position committed later",
				sn.max, sn.count, n)
		}
	}
}

// testTxnScopeAndDoor: one txnId under two scopes is two transactions,
// looked up one at a time or batched; an event's door reads back.
func testTxnScopeAndDoor(t *testing.T, s store.Store) {
	ctx := t.Context()
	createRoom(t, s, "!a:hub")
	send := store.TxnKey{UserID: "@alice:hub.example", DeviceID: "D", Scope: "send/!a:hub/m.room.message", TxnID: "t"}
	redact := store.TxnKey{UserID: "@alice:hub.example", DeviceID: "D", Scope: "redact/!a:hub/$e1", TxnID: "t"}
	e1 := ev("!a:hub", "$e1", "m.room.message", nil, 1)
	e1.Txn, e1.Door = &send, "bridge:acme-app"
	e2 := ev("!a:hub", "$e2", "m.room.redaction", nil, 2)
	e2.Txn, e2.Door = &redact, "client:DEV"
	insert(t, s, e1, e2)
	for k, want := range map[store.TxnKey]string{send: "$e1", redact: "$e2"} {
		if got, err := s.TxnEvent(ctx, k); err != nil || got != want {
			t.Errorf("TxnEvent(%s) = %q, %v; want %q", k.Scope, got, err, want)
		}
	}
	unscoped := store.TxnKey{UserID: "@alice:hub.example", DeviceID: "D", TxnID: "t"}
	if _, err := s.TxnEvent(ctx, unscoped); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TxnEvent without the scope = %v, want ErrNotFound", err)
	}
	must(t, "WriteEvents", s.WriteEvents(ctx, func(tx store.EventTx) error {
		got, err := tx.TxnEvents(ctx, []store.TxnKey{send, redact, unscoped})
		if err != nil {
			return err
		}
		if len(got) != 2 || got[send] != "$e1" || got[redact] != "$e2" {
			t.Errorf("TxnEvents = %v", got)
		}
		return nil
	}))
	for id, want := range map[string]string{"$e1": "bridge:acme-app", "$e2": "client:DEV"} {
		e, err := s.EventByID(ctx, id)
		if err != nil || e.Door != want {
			t.Errorf("EventByID(%s).Door = %+v, %v; want %q", id, e, err, want)
		}
	}
}

// testBatchedLookups covers TxnEvents and GetRooms: found keys only, and
// the transaction's own writes visible.
func testBatchedLookups(t *testing.T, s store.Store) {
	ctx := t.Context()
	createRoom(t, s, "!a:hub")
	createRoom(t, s, "!b:hub")
	k1 := store.TxnKey{UserID: "@alice:hub.example", DeviceID: "D", TxnID: "t1"}
	e := ev("!a:hub", "$e1", "m.room.message", nil, 1)
	e.Txn = &k1
	insert(t, s, e)
	err := s.WriteEvents(ctx, func(tx store.EventTx) error {
		k2 := store.TxnKey{UserID: "@alice:hub.example", DeviceID: "D", TxnID: "t2"}
		e2 := ev("!b:hub", "$e2", "m.room.message", nil, 1)
		e2.Txn = &k2
		if _, err := tx.InsertEvent(ctx, e2); err != nil {
			return err
		}
		other := store.TxnKey{UserID: "@alice:hub.example", DeviceID: "OTHER", TxnID: "t1"}
		got, err := tx.TxnEvents(ctx, []store.TxnKey{k1, k2, other})
		if err != nil {
			return err
		}
		if len(got) != 2 || got[k1] != "$e1" || got[k2] != "$e2" {
			t.Errorf("TxnEvents = %v, want t1→$e1 and t2→$e2 only", got)
		}
		if empty, err := tx.TxnEvents(ctx, nil); err != nil || len(empty) != 0 {
			t.Errorf("TxnEvents(nil) = %v, %v", empty, err)
		}
		rooms, err := tx.GetRooms(ctx, []string{"!a:hub", "!b:hub", "!missing:hub"})
		if err != nil {
			return err
		}
		if len(rooms) != 2 || rooms["!b:hub"] == nil || rooms["!b:hub"].LastEventID != "$e2" || rooms["!a:hub"].LastEventID != "$e1" {
			t.Errorf("GetRooms = %v, want !a and !b with their heads", rooms)
		}
		return nil
	})
	must(t, "WriteEvents", err)
}

// testRedaction: GetEvent sees the transaction's own insert, and
// RedactEvent replaces the stored JSON (reads then return the new bytes).
func testRedaction(t *testing.T, s store.Store) {
	ctx := t.Context()
	createRoom(t, s, "!r:hub")
	err := s.WriteEvents(ctx, func(tx store.EventTx) error {
		if _, err := tx.InsertEvent(ctx, ev("!r:hub", "$secret", "m.room.message", nil, 1)); err != nil {
			return err
		}
		e, err := tx.GetEvent(ctx, "$secret")
		if err != nil {
			return err
		}
		if e.RoomID != "!r:hub" || !strings.Contains(string(e.JSON), "hello from") {
			t.Errorf("GetEvent in tx = %+v", e)
		}
		if _, err := tx.GetEvent(ctx, "$missing"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetEvent missing: %v, want ErrNotFound", err)
		}
		if err := tx.RedactEvent(ctx, "$missing", json.RawMessage(`{}`)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RedactEvent missing: %v, want ErrNotFound", err)
		}
		return tx.RedactEvent(ctx, "$secret", json.RawMessage(`{"content":{},"type":"m.room.message"}`))
	})
	must(t, "WriteEvents", err)
	e, err := s.EventByID(ctx, "$secret")
	must(t, "EventByID", err)
	if string(e.JSON) != `{"content":{},"type":"m.room.message"}` {
		t.Errorf("after redaction JSON = %s", e.JSON)
	}
}

// Health directory.

func dirRec(idNat, last string) store.DirectoryRecord {
	return store.DirectoryRecord{
		IDNat: idNat, RPPS: strings.TrimPrefix(idNat, "8"), Civility: "Docteur",
		LastName: last, FirstName: "Marie",
		Professions: json.RawMessage(`[{"code":"10","label":"Médecin"}]`),
		Activities:  json.RawMessage(`[{"finess":"750000001","city":"PARIS"}]`),
		Active:      true,
	}
}

// importDir runs one whole import, in batches of batch records.
func importDir(t *testing.T, s store.Store, batch int, recs ...store.DirectoryRecord) int {
	t.Helper()
	ctx := t.Context()
	im, err := s.BeginDirectoryImport(ctx)
	if err != nil {
		t.Fatalf("BeginDirectoryImport: %v", err)
	}
	for len(recs) > 0 {
		n := min(batch, len(recs))
		if err := im.Add(ctx, recs[:n]); err != nil {
			t.Fatalf("Add: %v", err)
		}
		recs = recs[n:]
	}
	inactivated, err := im.Commit(ctx)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := im.Abort(ctx); err != nil {
		t.Fatalf("Abort after Commit must be a no-op: %v", err)
	}
	return inactivated
}

func readDir(t *testing.T, s store.Store) map[string]store.DirectoryRecord {
	t.Helper()
	out := map[string]store.DirectoryRecord{}
	last := ""
	err := s.DirectoryPractitioners(t.Context(), func(r store.DirectoryRecord) error {
		if r.IDNat <= last {
			t.Errorf("records out of idNat order: %q after %q", r.IDNat, last)
		}
		last = r.IDNat
		out[r.IDNat] = r
		return nil
	})
	if err != nil {
		t.Fatalf("DirectoryPractitioners: %v", err)
	}
	return out
}

func dirStats(t *testing.T, s store.Store) store.DirectoryStats {
	t.Helper()
	st, err := s.DirectoryStats(t.Context())
	if err != nil {
		t.Fatalf("DirectoryStats: %v", err)
	}
	return st
}

func testDirectoryEmpty(t *testing.T, s store.Store) {
	if st := dirStats(t, s); st != (store.DirectoryStats{}) {
		t.Fatalf("stats before any import = %+v, want zero", st)
	}
	if got := readDir(t, s); len(got) != 0 {
		t.Fatalf("directory before any import has %d records", len(got))
	}
	// An empty import is the importer's call to refuse; the store obeys.
	if n := importDir(t, s, 10); n != 0 {
		t.Fatalf("empty import inactivated %d", n)
	}
	if st := dirStats(t, s); st.Generation == 0 || st.Active+st.Inactive != 0 || st.ImportedAt.IsZero() {
		t.Fatalf("stats after empty import = %+v", st)
	}
}

func testDirectoryImports(t *testing.T, s store.Store) {
	before := time.Now().Add(-time.Second)
	a, b, c := dirRec("81000000001", "ALPHA"), dirRec("81000000002", "BETA"), dirRec("0123456789", "GAMMA")
	c.RPPS, c.Activities = "", nil
	if n := importDir(t, s, 2, a, b, c); n != 0 {
		t.Fatalf("first import inactivated %d", n)
	}
	got := readDir(t, s)
	if len(got) != 3 {
		t.Fatalf("after first import: %d records, want 3", len(got))
	}
	ga := got[a.IDNat]
	if ga.UpdatedAt.Before(before) || ga.UpdatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("UpdatedAt = %v, want about now", ga.UpdatedAt)
	}
	ga.UpdatedAt = time.Time{}
	if ga.IDNat != a.IDNat || ga.RPPS != a.RPPS || ga.Civility != a.Civility || ga.LastName != a.LastName ||
		ga.FirstName != a.FirstName || !ga.Active || !bytes.Equal(ga.Professions, a.Professions) || !bytes.Equal(ga.Activities, a.Activities) {
		t.Errorf("record read back = %+v, want %+v", ga, a)
	}
	if string(got[c.IDNat].Activities) != "[]" {
		t.Errorf("absent activities read back as %q, want []", got[c.IDNat].Activities)
	}
	st1 := dirStats(t, s)
	if st1.Active != 3 || st1.Inactive != 0 || st1.Generation == 0 {
		t.Fatalf("stats after first import = %+v", st1)
	}

	// Second import: B renamed, C gone, D new.
	b2, d := dirRec(b.IDNat, "BETA-DEUX"), dirRec("81000000003", "DELTA")
	if n := importDir(t, s, 2, a, b2, d); n != 1 {
		t.Fatalf("second import inactivated %d, want 1 (C)", n)
	}
	got = readDir(t, s)
	if len(got) != 4 || got[b.IDNat].LastName != "BETA-DEUX" || !got[d.IDNat].Active {
		t.Fatalf("after second import: %+v", got)
	}
	gc := got[c.IDNat]
	if gc.Active || gc.LastName != "GAMMA" {
		t.Fatalf("absent practitioner must be kept as inactive, got %+v", gc)
	}
	st2 := dirStats(t, s)
	if st2.Generation <= st1.Generation || st2.Active != 3 || st2.Inactive != 1 {
		t.Fatalf("stats after second import = %+v (first %+v)", st2, st1)
	}

	// Third import: only A. B and D become inactive; C stays inactive and is
	// not counted again, and keeps the time it was first found missing.
	time.Sleep(5 * time.Millisecond)
	if n := importDir(t, s, 1000, a); n != 2 {
		t.Fatalf("third import inactivated %d, want 2 (B, D)", n)
	}
	got = readDir(t, s)
	if len(got) != 4 || !got[a.IDNat].Active || got[b.IDNat].Active || got[d.IDNat].Active || got[c.IDNat].Active {
		t.Fatalf("after third import: %+v", got)
	}
	if !got[c.IDNat].UpdatedAt.Equal(gc.UpdatedAt) {
		t.Errorf("C's UpdatedAt moved from %v to %v though it was already inactive", gc.UpdatedAt, got[c.IDNat].UpdatedAt)
	}
	// Coming back makes one active again; B and D, still absent, were
	// inactive already and are not counted twice.
	if n := importDir(t, s, 1000, a, c); n != 0 {
		t.Fatalf("fourth import inactivated %d, want 0", n)
	}
	if got := readDir(t, s); !got[c.IDNat].Active || got[b.IDNat].Active {
		t.Fatalf("after fourth import: %+v", got)
	}
}

func testDirectoryAtomicSwitch(t *testing.T, s store.Store) {
	ctx := t.Context()
	var old []store.DirectoryRecord
	for i := range 300 {
		old = append(old, dirRec(fmt.Sprintf("8%010d", i), "OLD"))
	}
	importDir(t, s, 100, old...)
	st1 := dirStats(t, s)

	im, err := s.BeginDirectoryImport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var next []store.DirectoryRecord
	for i := 100; i < 500; i++ {
		next = append(next, dirRec(fmt.Sprintf("8%010d", i), "NEW"))
	}
	for i := 0; i < len(next); i += 150 {
		if err := im.Add(ctx, next[i:min(i+150, len(next))]); err != nil {
			t.Fatal(err)
		}
		// Between batches readers still see exactly the old directory.
		got := readDir(t, s)
		if len(got) != 300 {
			t.Fatalf("during the import a reader sees %d records, want the old 300", len(got))
		}
		for _, r := range got {
			if r.LastName != "OLD" {
				t.Fatalf("during the import a reader sees %+v from the new generation", r)
			}
		}
		if st := dirStats(t, s); st != st1 {
			t.Fatalf("stats during the import = %+v, want %+v", st, st1)
		}
	}

	// A read under way when the switch commits finishes on the old
	// generation: commit from inside the callback, on its first record.
	seen, names := 0, map[string]int{}
	committed := false
	err = s.DirectoryPractitioners(ctx, func(r store.DirectoryRecord) error {
		if !committed {
			committed = true
			n, err := im.Commit(ctx)
			if err != nil {
				return err
			}
			if n != 100 {
				return fmt.Errorf("commit inactivated %d, want 100", n)
			}
		}
		seen++
		names[r.LastName]++
		return nil
	})
	if err != nil {
		t.Fatalf("read across the commit: %v", err)
	}
	if seen != 300 || names["OLD"] != 300 {
		t.Fatalf("read across the commit saw %d records %v, want the 300 old ones", seen, names)
	}

	got := readDir(t, s)
	if len(got) != 500 {
		t.Fatalf("after the switch: %d records, want 400 new + 100 inactive", len(got))
	}
	for id, r := range got {
		if wantNew := r.LastName == "NEW"; wantNew != r.Active {
			t.Fatalf("after the switch %s = %+v", id, r)
		}
	}
	if st := dirStats(t, s); st.Active != 400 || st.Inactive != 100 {
		t.Fatalf("stats after the switch = %+v", st)
	}
}

func testDirectoryAbort(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := dirRec("81000000001", "ALPHA")
	importDir(t, s, 10, a)
	st1 := dirStats(t, s)

	im, err := s.BeginDirectoryImport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Add(ctx, []store.DirectoryRecord{dirRec("81000000002", "BETA")}); err != nil {
		t.Fatal(err)
	}
	if err := im.Abort(ctx); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if err := im.Abort(ctx); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
	if _, err := im.Commit(ctx); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if err := im.Add(ctx, []store.DirectoryRecord{a}); err == nil {
		t.Fatal("Add after Abort succeeded")
	}
	if st := dirStats(t, s); st != st1 {
		t.Fatalf("stats after abort = %+v, want unchanged %+v", st, st1)
	}
	if got := readDir(t, s); len(got) != 1 || !got[a.IDNat].Active {
		t.Fatalf("after abort: %+v", got)
	}
	// The aborted rows never surface later either.
	c := dirRec("81000000003", "GAMMA")
	if n := importDir(t, s, 10, a, c); n != 0 {
		t.Fatalf("import after abort inactivated %d", n)
	}
	if got := readDir(t, s); len(got) != 2 || got["81000000002"].IDNat != "" {
		t.Fatalf("after abort and a new import: %+v", got)
	}
}

// testDirectorySuperseded covers an import left unfinished by a crash (never
// committed nor aborted) and two imports at once: the newest one wins, the
// older one can neither write nor commit.
func testDirectorySuperseded(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := dirRec("81000000001", "ALPHA")
	importDir(t, s, 10, a)

	stale, err := s.BeginDirectoryImport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Add(ctx, []store.DirectoryRecord{dirRec("81000000002", "STALE")}); err != nil {
		t.Fatal(err)
	}
	c := dirRec("81000000003", "GAMMA")
	fresh, err := s.BeginDirectoryImport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Add(ctx, []store.DirectoryRecord{c}); err != nil {
		t.Fatal(err)
	}
	if err := stale.Add(ctx, []store.DirectoryRecord{dirRec("81000000004", "STALE")}); !errors.Is(err, store.ErrImportSuperseded) {
		t.Fatalf("Add of a superseded import: %v, want ErrImportSuperseded", err)
	}
	if _, err := stale.Commit(ctx); !errors.Is(err, store.ErrImportSuperseded) {
		t.Fatalf("Commit of a superseded import: %v, want ErrImportSuperseded", err)
	}
	// Aborting the loser must not release the winner's generation.
	if err := stale.Abort(ctx); err != nil {
		t.Fatalf("Abort of a superseded import: %v", err)
	}
	if n, err := fresh.Commit(ctx); err != nil || n != 1 {
		t.Fatalf("Commit of the newest import: %d, %v; want 1 (A), nil", n, err)
	}
	got := readDir(t, s)
	if len(got) != 2 || !got[c.IDNat].Active || got[a.IDNat].Active {
		t.Fatalf("after the newest import: %+v", got)
	}
}

func testDirectoryDuplicate(t *testing.T, s store.Store) {
	ctx := t.Context()
	im, err := s.BeginDirectoryImport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort(ctx) //nolint:errcheck // checked by the other tests
	a := dirRec("81000000001", "ALPHA")
	if err := im.Add(ctx, []store.DirectoryRecord{a}); err != nil {
		t.Fatal(err)
	}
	if err := im.Add(ctx, []store.DirectoryRecord{a}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("same idNat twice in one import: %v, want ErrExists", err)
	}
}

// testStreamHeads: each kind's head moves with its writes, and only then.
func testStreamHeads(t *testing.T, s store.Store) {
	ctx := t.Context()
	heads := func() store.Heads {
		h, err := s.StreamHeads(ctx)
		must(t, "StreamHeads", err)
		if m, _ := s.MaxPos(ctx); m != h.Pos {
			t.Errorf("StreamHeads.Pos %d != MaxPos %d", h.Pos, m)
		}
		return h
	}
	createRoom(t, s, "!r:hub")
	start := heads()
	pos := insert(t, s, member("!r:hub", "$m1", "@a:hub", "join", 1))
	h := heads()
	if h.Membership != pos[0] || h.Receipt != start.Receipt || h.AccountData != start.AccountData {
		t.Errorf("after a member event heads = %+v, want membership %d", h, pos[0])
	}
	msgs := insert(t, s, ev("!r:hub", "$msg", "m.room.message", nil, 2))
	if h2 := heads(); h2.Membership != pos[0] || h2.Pos != msgs[0] {
		t.Errorf("a message moved the membership head: %+v", h2)
	}
	rp, err := s.PutReceipt(ctx, store.Receipt{RoomID: "!r:hub", UserID: "@a:hub", Type: "m.read", EventID: "$msg"})
	must(t, "PutReceipt", err)
	ap, err := s.PutAccountData(ctx, store.AccountData{UserID: "@a:hub", Type: "m.x", Content: json.RawMessage(`{}`)})
	must(t, "PutAccountData", err)
	h = heads()
	if h.Receipt != rp || h.AccountData != ap || h.Membership != pos[0] || h.Pos != ap {
		t.Errorf("heads = %+v, want receipt %d, account data %d, membership %d", h, rp, ap, pos[0])
	}
}

// testSearchAccounts: case-insensitive, exact before prefix before
// substring, limit honoured, wildcards literal, no password hashes.
func testSearchAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, a := range []store.Account{
		{Localpart: "anne", DisplayName: "Anne Martin - Médecin", PasswordHash: "secret"},
		{Localpart: "marianne", DisplayName: "Marianne Petit - Infirmier"},
		{Localpart: "bob", DisplayName: "Anne"},
		{Localpart: "p100_x", DisplayName: "Percent 100%"},
	} {
		a.CreatedAt = time.UnixMilli(1700000000000)
		must(t, "CreateAccount", s.CreateAccount(ctx, a))
	}
	names := func(as []store.Account) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.Localpart)
			if a.PasswordHash != "" {
				t.Errorf("SearchAccounts returned a password hash for %s", a.Localpart)
			}
		}
		return out
	}
	got, err := s.SearchAccounts(ctx, "ANNE", 10)
	must(t, "SearchAccounts", err)
	// Exact (localpart anne, display name "Anne" of bob), then prefix
	// ("Anne Martin" is already exact by localpart), then substring.
	if want := []string{"bob", "anne", "marianne"}; !slices.Equal(names(got), want) {
		t.Errorf("search ANNE = %v, want %v", names(got), want)
	}
	got, err = s.SearchAccounts(ctx, "anne", 1)
	must(t, "SearchAccounts", err)
	if len(got) != 1 {
		t.Errorf("limit 1 gave %d", len(got))
	}
	got, err = s.SearchAccounts(ctx, "0%", 10)
	must(t, "SearchAccounts", err)
	if want := []string{"p100_x"}; !slices.Equal(names(got), want) {
		t.Errorf("search 0%% = %v, want %v", names(got), want)
	}
	got, err = s.SearchAccounts(ctx, "_", 10)
	must(t, "SearchAccounts", err)
	if want := []string{"p100_x"}; !slices.Equal(names(got), want) {
		t.Errorf("search _ = %v, want only the literal underscore", names(got))
	}
}
