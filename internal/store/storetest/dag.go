package storetest

import (
	"errors"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

var dagTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"DAGExtremities", testDAGExtremities},
	{"DAGExtremitiesInOneBatch", testDAGExtremitiesInOneBatch},
	{"DAGExtremitiesEdgeCases", testDAGExtremitiesEdgeCases},
	{"DAGStateGroups", testDAGStateGroups},
	{"DAGStateGroupSnapshots", testDAGStateGroupSnapshots},
	{"DAGSetCurrentState", testDAGSetCurrentState},
	{"DAGEventsNotLive", testDAGEventsNotLive},
	{"DAGTopologicalOrder", testDAGTopologicalOrder},
}

// dagEv is ev with prev_events.
func dagEv(room, id string, depth int64, prev ...string) store.NewEvent {
	e := ev(room, id, "m.room.message", nil, depth)
	e.PrevEvents = prev
	return e
}

func extremityIDs(t *testing.T, s store.Store, room string) []string {
	t.Helper()
	xs, err := s.Extremities(t.Context(), room)
	must(t, "Extremities", err)
	var out []string
	for _, x := range xs {
		out = append(out, x.EventID)
	}
	return out
}

func testDAGExtremities(t *testing.T, s store.Store) {
	const room = "!dag:hub"
	createRoom(t, s, room)
	steps := []struct {
		ev   store.NewEvent
		want []string // highest depth first, then by ID
	}{
		{dagEv(room, "$a", 1), []string{"$a"}},
		{dagEv(room, "$b", 2, "$a"), []string{"$b"}},
		// Two events on the same parent: a fork.
		{dagEv(room, "$c1", 3, "$b"), []string{"$c1"}},
		{dagEv(room, "$c2", 3, "$b"), []string{"$c1", "$c2"}},
		{dagEv(room, "$d2", 4, "$c2"), []string{"$d2", "$c1"}},
		// A merge.
		{dagEv(room, "$e", 5, "$d2", "$c1"), []string{"$e"}},
	}
	for _, st := range steps {
		insert(t, s, st.ev)
		if got := extremityIDs(t, s, room); !slices.Equal(got, st.want) {
			t.Fatalf("after %s: extremities %v, want %v", st.ev.EventID, got, st.want)
		}
	}
	r, err := s.GetRoom(t.Context(), room)
	must(t, "GetRoom", err)
	if r.LastEventID != "$e" || r.Depth != 5 {
		t.Errorf("room head = %s/%d, want $e/5", r.LastEventID, r.Depth)
	}
	// A live event older than the head does not lower the room's depth.
	insert(t, s, dagEv(room, "$late", 2, "$a"))
	if r, _ := s.GetRoom(t.Context(), room); r.Depth != 5 {
		t.Errorf("depth after a shallow event = %d, want 5", r.Depth)
	}
	if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$e", "$late"}) {
		t.Errorf("extremities = %v", got)
	}
	// Soft-failed and rejected events are never extremities and leave
	// their prev_events in place.
	sf := dagEv(room, "$sf", 6, "$e")
	sf.Flags = store.FlagSoftFailed
	rj := dagEv(room, "$rj", 6, "$late")
	rj.Flags = store.FlagRejected
	insert(t, s, sf, rj)
	if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$e", "$late"}) {
		t.Errorf("extremities after soft-failed/rejected = %v", got)
	}
	// An event that arrives after a stored child names it is not an
	// extremity (its child already references it).
	insert(t, s, dagEv(room, "$child", 7, "$e", "$late", "$parent"))
	insert(t, s, dagEv(room, "$parent", 6, "$e"))
	if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$child"}) {
		t.Errorf("extremities after a late parent = %v, want [$child]", got)
	}
}

// The linear fast path (a room with one extremity keeps it in its rooms
// row) must not mistake other shapes for a line: a first event naming two
// unknown parents, a room whose only event is not an extremity, a line
// resumed after a merge, and a send that is local in a forked room.
func testDAGExtremitiesEdgeCases(t *testing.T, s store.Store) {
	local := func(room, id string, depth int64, prev ...string) store.NewEvent {
		e := dagEv(room, id, depth, prev...)
		e.Local = true
		return e
	}
	t.Run("first event with two unknown parents", func(t *testing.T) {
		const room = "!edge1:hub"
		createRoom(t, s, room)
		insert(t, s, dagEv(room, "$first", 5, "$unknown1", "$unknown2"))
		if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$first"}) {
			t.Fatalf("extremities = %v, want [$first]", got)
		}
		insert(t, s, local(room, "$next", 6, "$first"))
		if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$next"}) {
			t.Fatalf("after a local send: %v, want [$next]", got)
		}
	})
	t.Run("only event soft-failed", func(t *testing.T) {
		const room = "!edge2:hub"
		createRoom(t, s, room)
		sf := dagEv(room, "$sf", 1)
		sf.Flags = store.FlagSoftFailed
		insert(t, s, sf)
		if got := extremityIDs(t, s, room); len(got) != 0 {
			t.Fatalf("extremities with only a soft-failed event = %v, want none", got)
		}
		insert(t, s, dagEv(room, "$n", 2, "$sf"))
		if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$n"}) {
			t.Fatalf("after the next event: %v, want [$n]", got)
		}
		insert(t, s, local(room, "$n2", 3, "$n"))
		if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$n2"}) {
			t.Fatalf("after a local send: %v, want [$n2]", got)
		}
	})
	t.Run("fork, local merge, line again, fork again", func(t *testing.T) {
		const room = "!edge3:hub"
		createRoom(t, s, room)
		insert(t, s, local(room, "$a", 1), local(room, "$b", 2, "$a"))
		insert(t, s, dagEv(room, "$remote", 2, "$a"))
		if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$b", "$remote"}) {
			t.Fatalf("fork: %v", got)
		}
		insert(t, s, local(room, "$m", 3, "$b", "$remote"))
		insert(t, s, local(room, "$l1", 4, "$m"), local(room, "$l2", 5, "$l1"))
		if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$l2"}) {
			t.Fatalf("line after the merge: %v, want [$l2]", got)
		}
		insert(t, s, dagEv(room, "$r2", 5, "$l1"))
		if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$l2", "$r2"}) {
			t.Fatalf("second fork: %v, want [$l2 $r2]", got)
		}
		r, err := s.GetRoom(t.Context(), room)
		must(t, "GetRoom", err)
		if r.Depth != 5 {
			t.Errorf("room depth = %d, want 5", r.Depth)
		}
	})
}

// In one transaction (Postgres buffers the rows), a chain and a fork come
// out as if inserted one by one.
// Local events (no edges recorded) come out the same.
func testDAGExtremitiesInOneBatch(t *testing.T, s store.Store) {
	for _, local := range []bool{false, true} {
		room := "!dagb:hub"
		if local {
			room = "!dagl:hub"
		}
		testExtremitiesInOneBatch(t, s, room, local)
	}
}

func testExtremitiesInOneBatch(t *testing.T, s store.Store, room string, local bool) {
	createRoom(t, s, room)
	e := func(id string, depth int64, prev ...string) store.NewEvent {
		ev := dagEv(room, id+room, depth, prev...)
		for i := range ev.PrevEvents {
			ev.PrevEvents[i] += room
		}
		ev.Local = local
		return ev
	}
	insert(t, s,
		e("$a", 1),
		e("$b", 2, "$a"),
		e("$c", 3, "$b"),
		e("$x", 3, "$b"),
		e("$d", 4, "$c"),
	)
	if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$d" + room, "$x" + room}) {
		t.Errorf("local=%v: extremities = %v, want [$d $x]", local, got)
	}
	err := s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		if _, err := tx.InsertEvent(t.Context(), e("$m", 5, "$d", "$x")); err != nil {
			return err
		}
		xs, err := tx.Extremities(t.Context(), room) // sees its own write
		if err != nil {
			return err
		}
		if len(xs) != 1 || xs[0] != (store.Extremity{EventID: "$m" + room, Depth: 5}) {
			t.Errorf("local=%v: in-transaction extremities = %v, want [$m/5]", local, xs)
		}
		return nil
	})
	must(t, "WriteEvents", err)
}

func sk(typ, key string) store.StateKey { return store.StateKey{Type: typ, StateKey: key} }

func testDAGStateGroups(t *testing.T, s store.Store) {
	const room = "!sg:hub"
	createRoom(t, s, room)
	var g1, g2, g3, g4 int64
	err := s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		var err error
		if g1, err = tx.NewStateGroup(t.Context(), room, 0, store.StateMap{
			sk("m.room.create", ""): "$create", sk("m.room.member", "@a:hub"): "$a-join",
		}); err != nil {
			return err
		}
		if g2, err = tx.NewStateGroup(t.Context(), room, g1, store.StateMap{sk("m.room.name", ""): "$name"}); err != nil {
			return err
		}
		// A branch from g1, replacing and removing keys.
		if g3, err = tx.NewStateGroup(t.Context(), room, g1, store.StateMap{
			sk("m.room.member", "@a:hub"): "$a-leave", sk("m.room.create", ""): "",
		}); err != nil {
			return err
		}
		if g4, err = tx.NewStateGroup(t.Context(), room, g2, store.StateMap{}); err != nil {
			return err
		}
		got, err := tx.StateGroup(t.Context(), g2) // sees its own writes
		if err != nil {
			return err
		}
		if len(got) != 3 {
			t.Errorf("in-transaction group %d = %v", g2, got)
		}
		return nil
	})
	must(t, "WriteEvents", err)
	for _, c := range []struct {
		g    int64
		want store.StateMap
	}{
		{g1, store.StateMap{sk("m.room.create", ""): "$create", sk("m.room.member", "@a:hub"): "$a-join"}},
		{g2, store.StateMap{sk("m.room.create", ""): "$create", sk("m.room.member", "@a:hub"): "$a-join", sk("m.room.name", ""): "$name"}},
		{g3, store.StateMap{sk("m.room.member", "@a:hub"): "$a-leave"}},
		{g4, store.StateMap{sk("m.room.create", ""): "$create", sk("m.room.member", "@a:hub"): "$a-join", sk("m.room.name", ""): "$name"}},
	} {
		got, err := s.StateGroup(t.Context(), c.g)
		must(t, "StateGroup", err)
		if !maps.Equal(got, c.want) {
			t.Errorf("group %d = %v, want %v", c.g, got, c.want)
		}
	}
	if _, err := s.StateGroup(t.Context(), g4+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown group: err = %v, want ErrNotFound", err)
	}
	err = s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		_, err := tx.NewStateGroup(t.Context(), room, g4+1000, store.StateMap{})
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("group on an unknown prev: err = %v, want ErrNotFound", err)
	}
}

// A long chain of one-key deltas stays readable, and correct, across the
// snapshots the store takes to bound it.
func testDAGStateGroupSnapshots(t *testing.T, s store.Store) {
	const room = "!sgs:hub"
	createRoom(t, s, room)
	n := 3*store.SnapshotEvery + 5
	groups := make([]int64, n)
	want := make([]store.StateMap, n)
	err := s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		cur := store.StateMap{}
		var prev int64
		for i := range n {
			key := sk("m.room.member", "@u"+string(rune('a'+i%7))+":hub")
			delta := store.StateMap{key: "$e" + string(rune('A'+i%50))}
			if i%11 == 10 {
				delta[key] = "" // a removal now and then
			}
			g, err := tx.NewStateGroup(t.Context(), room, prev, delta)
			if err != nil {
				return err
			}
			cur = store.ApplyDelta(cur, delta)
			groups[i], want[i], prev = g, cur, g
		}
		return nil
	})
	must(t, "WriteEvents", err)
	for i := range n {
		got, err := s.StateGroup(t.Context(), groups[i])
		must(t, "StateGroup", err)
		if !maps.Equal(got, want[i]) {
			t.Fatalf("group #%d = %v, want %v", i, got, want[i])
		}
	}
}

func testDAGSetCurrentState(t *testing.T, s store.Store) {
	const room = "!cs:hub"
	createRoom(t, s, room)
	insert(t, s,
		ev(room, "$create", "m.room.create", ptr(""), 1),
		member(room, "$a-join", "@a:hub", "join", 2),
		ev(room, "$name1", "m.room.name", ptr(""), 3),
	)
	// A state event of a fork that current state does not take.
	side := ev(room, "$b-join", "m.room.member", ptr("@b:hub"), 3)
	side.Membership = "join"
	side.Historical = true
	insert(t, s, side)
	heads0, err := s.StreamHeads(t.Context())
	must(t, "StreamHeads", err)
	want := store.StateMap{
		sk("m.room.create", ""): "$create", sk("m.room.member", "@a:hub"): "$a-join", sk("m.room.member", "@b:hub"): "$b-join",
	}
	err = s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		if _, err := tx.InsertEvent(t.Context(), dagEv(room, "$msg", 4, "$name1")); err != nil {
			return err
		}
		g, err := tx.NewStateGroup(t.Context(), room, 0, want)
		if err != nil {
			return err
		}
		return tx.SetCurrentState(t.Context(), room, g, want)
	})
	must(t, "WriteEvents", err)
	cur, err := s.CurrentState(t.Context(), room)
	must(t, "CurrentState", err)
	got := store.StateMap{}
	for _, e := range cur {
		got[sk(e.Type, *e.StateKey)] = e.EventID
	}
	if !maps.Equal(got, want) {
		t.Errorf("current state = %v, want %v", got, want)
	}
	members, err := s.RoomMembers(t.Context(), room, "join")
	must(t, "RoomMembers", err)
	if len(members) != 2 {
		t.Errorf("joined members = %v, want @a and @b", members)
	}
	r, err := s.GetRoom(t.Context(), room)
	must(t, "GetRoom", err)
	if g, err := s.StateGroup(t.Context(), r.StateGroup); err != nil || !maps.Equal(g, want) {
		t.Errorf("room state group %d = %v (%v), want %v", r.StateGroup, g, err, want)
	}
	heads, err := s.StreamHeads(t.Context())
	must(t, "StreamHeads", err)
	if heads.Membership <= heads0.Membership {
		t.Errorf("a membership changed by SetCurrentState did not move the membership head (%d -> %d)", heads0.Membership, heads.Membership)
	}
	// A state event that is not stored cannot be current state.
	err = s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		bad := store.ApplyDelta(want, store.StateMap{sk("m.room.topic", ""): "$nowhere"})
		return tx.SetCurrentState(t.Context(), room, r.StateGroup, bad)
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetCurrentState with an unknown event: err = %v, want ErrNotFound", err)
	}
}

// Events that are not live (flagged, or historical) take negative
// positions: no /sync token covers them, they have no outbox row, they are
// never served to clients, and they change neither the room head nor
// current state. Rooms may still read them inside the writer.
func testDAGEventsNotLive(t *testing.T, s store.Store) {
	const room = "!nl:hub"
	createRoom(t, s, room)
	live := insert(t, s, ev(room, "$create", "m.room.create", ptr(""), 1), dagEv(room, "$m1", 2, "$create"))
	heads0, err := s.StreamHeads(t.Context())
	must(t, "StreamHeads", err)
	out0, err := s.PendingOutbox(t.Context(), 0, 1000)
	must(t, "PendingOutbox", err)

	old := dagEv(room, "$old", 1)
	old.Historical = true
	outlier := ev(room, "$outlier", "m.room.name", ptr(""), 1)
	outlier.Flags = store.FlagOutlier
	soft := dagEv(room, "$soft", 3, "$m1")
	soft.Flags = store.FlagSoftFailed
	rej := ev(room, "$rej", "m.room.topic", ptr(""), 3)
	rej.Flags = store.FlagRejected
	p1 := insert(t, s, old, outlier)
	p2 := insert(t, s, soft, rej)
	all := append(p1, p2...)
	for i, p := range all {
		if p >= 0 {
			t.Errorf("event #%d not live took position %d", i, p)
		}
	}
	if !strictlyIncreasing([]int64{-all[0], -all[1], -all[2], -all[3]}) {
		t.Errorf("negative positions not strictly decreasing: %v", all)
	}
	heads, err := s.StreamHeads(t.Context())
	must(t, "StreamHeads", err)
	if heads != heads0 {
		t.Errorf("stream heads moved: %+v -> %+v", heads0, heads)
	}
	out, err := s.PendingOutbox(t.Context(), 0, 1000)
	must(t, "PendingOutbox", err)
	if len(out) != len(out0) {
		t.Errorf("outbox grew from %d to %d", len(out0), len(out))
	}
	r, err := s.GetRoom(t.Context(), room)
	must(t, "GetRoom", err)
	if r.LastEventID != "$m1" || r.Depth != 2 {
		t.Errorf("room head = %s/%d, want $m1/2", r.LastEventID, r.Depth)
	}
	if got := extremityIDs(t, s, room); !slices.Equal(got, []string{"$m1"}) {
		t.Errorf("extremities = %v, want [$m1]", got)
	}
	cur, err := s.CurrentState(t.Context(), room)
	must(t, "CurrentState", err)
	if ids := ids(cur); !slices.Equal(ids, []string{"$create"}) {
		t.Errorf("current state = %v", ids)
	}
	// Client reads.
	tl, err := s.RoomEvents(t.Context(), room, -1<<40, 1<<40, 100, store.Forward)
	must(t, "RoomEvents", err)
	if ids := ids(tl); !slices.Equal(ids, []string{"$create", "$m1"}) {
		t.Errorf("RoomEvents = %v", ids)
	}
	st, err := s.StateEventsBetween(t.Context(), room, -1<<40, 1<<40)
	must(t, "StateEventsBetween", err)
	if ids := ids(st); !slices.Equal(ids, []string{"$create"}) {
		t.Errorf("StateEventsBetween = %v", ids)
	}
	for _, id := range []string{"$old", "$outlier", "$soft", "$rej"} {
		if _, err := s.EventByID(t.Context(), id); id != "$old" && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("EventByID(%s): err = %v, want ErrNotFound", id, err)
		}
	}
	byID, err := s.EventsByID(t.Context(), []string{"$create", "$outlier", "$soft", "$rej"})
	must(t, "EventsByID", err)
	if ids := ids(byID); !slices.Equal(ids, []string{"$create"}) {
		t.Errorf("EventsByID = %v", ids)
	}
	at, err := s.StateAt(t.Context(), room, live[1])
	must(t, "StateAt", err)
	if ids := ids(at); !slices.Equal(ids, []string{"$create"}) {
		t.Errorf("StateAt = %v", ids)
	}
	// The writer sees everything, with its flags.
	err = s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		evs, err := tx.EventsByIDAny(t.Context(), []string{"$soft", "$rej", "$outlier", "$old", "$nope"})
		if err != nil {
			return err
		}
		got := map[string]store.EventFlags{}
		for _, e := range evs {
			got[e.EventID] = e.Flags
		}
		want := map[string]store.EventFlags{"$soft": store.FlagSoftFailed, "$rej": store.FlagRejected, "$outlier": store.FlagOutlier, "$old": 0}
		if !maps.Equal(got, want) {
			t.Errorf("EventsByIDAny flags = %v, want %v", got, want)
		}
		return nil
	})
	must(t, "WriteEvents", err)
	// A transaction ID only goes with a live event.
	bad := dagEv(room, "$txn-old", 1)
	bad.Historical = true
	bad.Txn = &store.TxnKey{UserID: "@a:hub", DeviceID: "D", Scope: "s", TxnID: "t"}
	err = s.WriteEvents(t.Context(), func(tx store.EventTx) error {
		_, err := tx.InsertEvent(t.Context(), bad)
		return err
	})
	if err == nil {
		t.Error("a historical event with a transaction ID was stored")
	}
	// A later live event still takes the next live position.
	p := insert(t, s, dagEv(room, "$m2", 3, "$m1"))
	if p[0] != heads.Pos+1 {
		t.Errorf("next live position = %d, want %d", p[0], heads.Pos+1)
	}
}

// Topological order: depth, then position; historical events (negative
// positions) take their place by depth; flagged events never appear. An
// event that arrives late into the past does not move the stream.
func testDAGTopologicalOrder(t *testing.T, s store.Store) {
	const room = "!topo:hub"
	createRoom(t, s, room)
	insert(t, s, dagEv(room, "$1", 1), dagEv(room, "$2", 2, "$1"), dagEv(room, "$3a", 3, "$2"))
	insert(t, s, dagEv(room, "$3b", 3, "$2"), dagEv(room, "$4", 4, "$3a", "$3b"))
	heads0, err := s.StreamHeads(t.Context())
	must(t, "StreamHeads", err)
	// Backfilled history at depth 2 and 3, a soft-failed event at 4.
	old2 := dagEv(room, "$old2", 2, "$1")
	old2.Historical = true
	old3 := dagEv(room, "$old3", 3, "$old2")
	old3.Historical = true
	sf := dagEv(room, "$sf", 4, "$3a")
	sf.Flags = store.FlagSoftFailed
	insert(t, s, old2, old3, sf)
	heads, err := s.StreamHeads(t.Context())
	must(t, "StreamHeads", err)
	if heads != heads0 {
		t.Errorf("late history moved the stream: %+v -> %+v", heads0, heads)
	}
	live, err := s.RoomEvents(t.Context(), room, 0, heads.Pos, 0, store.Forward)
	must(t, "RoomEvents", err)
	if got := ids(live); !slices.Equal(got, []string{"$1", "$2", "$3a", "$3b", "$4"}) {
		t.Errorf("stream order = %v", got)
	}
	all, err := s.RoomEventsTopo(t.Context(), room, store.TopoPos{Depth: 0, Pos: 0}, 0, store.Forward, math.MinInt64, math.MaxInt64)
	must(t, "RoomEventsTopo", err)
	// Depth 2: $old2 (negative position) before $2; depth 3 likewise.
	want := []string{"$1", "$old2", "$2", "$old3", "$3a", "$3b", "$4"}
	if got := ids(all); !slices.Equal(got, want) {
		t.Fatalf("topological order = %v, want %v", got, want)
	}
	for _, c := range []struct {
		from  store.TopoPos
		limit int
		dir   store.Direction
		want  []string
	}{
		{all[6].Topo(), 0, store.Backward, []string{"$3b", "$3a", "$old3", "$2", "$old2", "$1"}},
		{all[6].Topo(), 2, store.Backward, []string{"$3b", "$3a"}},
		{all[3].Topo(), 10, store.Backward, []string{"$2", "$old2", "$1"}},
		{all[2].Topo(), 2, store.Forward, []string{"$old3", "$3a"}},
		{all[6].Topo(), 5, store.Forward, nil},
		{store.TopoPos{Depth: 1 << 53, Pos: 0}, 1, store.Backward, []string{"$4"}},
	} {
		got, err := s.RoomEventsTopo(t.Context(), room, c.from, c.limit, c.dir, math.MinInt64, math.MaxInt64)
		must(t, "RoomEventsTopo", err)
		if !slices.Equal(ids(got), c.want) {
			t.Errorf("RoomEventsTopo(%+v, %d, %v) = %v, want %v", c.from, c.limit, c.dir, ids(got), c.want)
		}
	}
	// Bounded by position: only live events between $2 and $4.
	got, err := s.RoomEventsTopo(t.Context(), room, store.TopoPos{}, 0, store.Forward, live[1].Pos, live[3].Pos)
	must(t, "RoomEventsTopo", err)
	if !slices.Equal(ids(got), []string{"$2", "$3a", "$3b"}) {
		t.Errorf("RoomEventsTopo within positions = %v", ids(got))
	}
}
