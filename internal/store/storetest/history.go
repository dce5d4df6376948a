package storetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

var historyTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"HistoryStateAt", testHistoryStateAt},
	{"HistoryStateEventAt", testHistoryStateEventAt},
	{"HistoryVisibilityChanges", testHistoryVisibilityChanges},
}

func eventIDs(evs []store.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

// historyRoom writes a room whose state changes over time, with another
// room's state interleaved, and returns the positions.
func historyRoom(t *testing.T, s store.Store) (room string, p []int64) {
	room, other := "!h:hub", "!o:hub"
	const u, v = "@u:hub", "@v:hub"
	createRoom(t, s, room)
	createRoom(t, s, other)
	return room, insert(t, s,
		ev(room, "$create", "m.room.create", ptr(""), 1), // 0
		member(room, "$alice", "@alice:hub.example", "join", 2),
		ev(room, "$hv1", "m.room.history_visibility", ptr(""), 3),
		ev(room, "$name1", "m.room.name", ptr(""), 4),
		member(room, "$u-inv", u, "invite", 5),
		ev(other, "$o-name", "m.room.name", ptr(""), 1), // 5: another room
		ev(room, "$msg1", "m.room.message", nil, 6),
		member(room, "$u-join", u, "join", 7),
		member(room, "$v-join", v, "join", 8),
		ev(room, "$name2", "m.room.name", ptr(""), 9),
		member(room, "$u-leave", u, "leave", 10), // 10
		ev(room, "$hv2", "m.room.history_visibility", ptr(""), 11),
		ev(room, "$msg2", "m.room.message", nil, 12),
		member(other, "$o-u", u, "join", 2), // 13: another room
	)
}

func testHistoryStateAt(t *testing.T, s store.Store) {
	ctx := t.Context()
	room, p := historyRoom(t, s)
	for _, c := range []struct {
		pos  int64
		want []string
	}{
		{0, nil},
		{p[0] - 1, nil},
		{p[0], []string{"$create"}},
		{p[3], []string{"$create", "$alice", "$hv1", "$name1"}},
		{p[5], []string{"$create", "$alice", "$hv1", "$name1", "$u-inv"}}, // another room's event changes nothing
		{p[7], []string{"$create", "$alice", "$hv1", "$name1", "$u-join"}},
		{p[9], []string{"$create", "$alice", "$hv1", "$u-join", "$v-join", "$name2"}},
		{p[10], []string{"$create", "$alice", "$hv1", "$v-join", "$name2", "$u-leave"}},
		{p[13], []string{"$create", "$alice", "$v-join", "$name2", "$u-leave", "$hv2"}},
	} {
		got, err := s.StateAt(ctx, room, c.pos)
		must(t, "StateAt", err)
		if ids := eventIDs(got); !slices.Equal(ids, c.want) {
			t.Errorf("StateAt(%d) = %v, want %v", c.pos, ids, c.want)
		}
		for i := 1; i < len(got); i++ {
			if got[i-1].Pos >= got[i].Pos {
				t.Errorf("StateAt(%d) not ascending: %v", c.pos, eventIDs(got))
			}
		}
	}
	// At the head, the state is the current state, rows and all.
	cur, err := s.CurrentState(ctx, room)
	must(t, "CurrentState", err)
	at, err := s.StateAt(ctx, room, maxPos(t, s))
	must(t, "StateAt head", err)
	if len(at) != len(cur) {
		t.Fatalf("StateAt(head) has %d events, current state %d", len(at), len(cur))
	}
	for i := range cur {
		if at[i].EventID != cur[i].EventID || at[i].Pos != cur[i].Pos || string(at[i].JSON) != string(cur[i].JSON) ||
			at[i].Membership != cur[i].Membership || at[i].StateKey == nil || *at[i].StateKey != *cur[i].StateKey {
			t.Errorf("StateAt(head)[%d] = %+v, current state %+v", i, at[i], cur[i])
		}
	}
	if got, err := s.StateAt(ctx, "!unknown:hub", maxPos(t, s)); err != nil || len(got) != 0 {
		t.Errorf("StateAt of an unknown room = %v, %v", eventIDs(got), err)
	}
}

func testHistoryStateEventAt(t *testing.T, s store.Store) {
	ctx := t.Context()
	room, p := historyRoom(t, s)
	for _, c := range []struct {
		typ, key string
		pos      int64
		want     string // "" = not found
	}{
		{"m.room.name", "", p[2], ""},
		{"m.room.name", "", p[3], "$name1"},
		{"m.room.name", "", p[8], "$name1"},
		{"m.room.name", "", p[9], "$name2"},
		{"m.room.member", "@u:hub", p[3], ""},
		{"m.room.member", "@u:hub", p[4], "$u-inv"},
		{"m.room.member", "@u:hub", p[12], "$u-leave"},
		{"m.room.member", "@u:hub", p[13], "$u-leave"}, // its join in another room is not here
		{"m.room.topic", "", p[13], ""},
	} {
		e, err := s.StateEventAt(ctx, room, c.typ, c.key, c.pos)
		if c.want == "" {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("StateEventAt(%s/%s, %d) = %v, %v; want ErrNotFound", c.typ, c.key, c.pos, e, err)
			}
			continue
		}
		must(t, "StateEventAt", err)
		if e.EventID != c.want {
			t.Errorf("StateEventAt(%s/%s, %d) = %s, want %s", c.typ, c.key, c.pos, e.EventID, c.want)
		}
	}
	e, err := s.StateEventAt(ctx, room, "m.room.member", "@u:hub", p[7])
	must(t, "StateEventAt", err)
	if e.Membership != "join" || e.Pos != p[7] || e.RoomID != room {
		t.Errorf("StateEventAt member = %+v", e)
	}
}

func testHistoryVisibilityChanges(t *testing.T, s store.Store) {
	ctx := t.Context()
	room, p := historyRoom(t, s)
	got, err := s.VisibilityChanges(ctx, room, "@u:hub")
	must(t, "VisibilityChanges", err)
	want := []string{"$hv1", "$u-inv", "$u-join", "$u-leave", "$hv2"}
	if ids := eventIDs(got); !slices.Equal(ids, want) {
		t.Fatalf("VisibilityChanges = %v, want %v", ids, want)
	}
	wantPos := []int64{p[2], p[4], p[7], p[10], p[11]}
	for i, e := range got {
		if e.Pos != wantPos[i] || e.RoomID != room || len(e.JSON) == 0 {
			t.Errorf("VisibilityChanges[%d] = %+v", i, e)
		}
	}
	if got[1].Membership != "invite" || got[3].Membership != "leave" {
		t.Errorf("memberships = %q, %q", got[1].Membership, got[3].Membership)
	}
	// A stranger gets only the room's visibility changes.
	got, err = s.VisibilityChanges(ctx, room, "@nobody:hub")
	must(t, "VisibilityChanges", err)
	if ids := eventIDs(got); !slices.Equal(ids, []string{"$hv1", "$hv2"}) {
		t.Errorf("VisibilityChanges of a stranger = %v", ids)
	}
	if got, err := s.VisibilityChanges(ctx, "!unknown:hub", "@u:hub"); err != nil || len(got) != 0 {
		t.Errorf("VisibilityChanges of an unknown room = %v, %v", eventIDs(got), err)
	}
}
