package syncapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

// countingStore counts the reads only history visibility makes.
type countingStore struct {
	store.Store
	changes, stateAt atomic.Int64
}

func (c *countingStore) VisibilityChanges(ctx context.Context, roomID, userID string) ([]store.Event, error) {
	c.changes.Add(1)
	return c.Store.VisibilityChanges(ctx, roomID, userID)
}

func (c *countingStore) StateAt(ctx context.Context, roomID string, pos int64) ([]store.Event, error) {
	c.stateAt.Add(1)
	return c.Store.StateAt(ctx, roomID, pos)
}

func testAPI(t testing.TB) (*API, *countingStore) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cs := &countingStore{Store: s}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &API{st: cs, n: NewNotifier(log, nil), log: log}, cs
}

// room writes events to a room, creating it first if needed: "msg", or
// "hv:X" / "m:USER:X" for state.
type room struct {
	t     testing.TB
	s     store.Store
	id    string
	depth int64
	ids   []string
}

func newRoom(t testing.TB, s store.Store, id string) *room {
	t.Helper()
	err := s.WriteEvents(context.Background(), func(tx store.EventTx) error {
		return tx.CreateRoom(context.Background(), store.Room{RoomID: id, Version: "11", Creator: "@alice:hub"})
	})
	if err != nil {
		t.Fatal(err)
	}
	return &room{t: t, s: s, id: id}
}

func (r *room) write(kind, sender, key, value string) string {
	r.t.Helper()
	r.depth++
	e := store.Event{EventID: fmt.Sprintf("$%s-%d", r.id[1:], r.depth), RoomID: r.id, Sender: sender, Depth: r.depth, OriginTS: 1}
	var content string
	switch kind {
	case "msg":
		e.Type, content = "m.room.message", fmt.Sprintf(`{"body":"%d"}`, r.depth)
	case "hv":
		e.Type, e.StateKey, content = "m.room.history_visibility", new(""), fmt.Sprintf(`{"history_visibility":%q}`, value)
	case "member":
		e.Type, e.StateKey, e.Membership, content = "m.room.member", &key, value, fmt.Sprintf(`{"membership":%q}`, value)
	}
	sk := ""
	if e.StateKey != nil {
		sk = fmt.Sprintf(`,"state_key":%q`, *e.StateKey)
	}
	e.JSON = fmt.Appendf(nil, `{"type":%q,"sender":%q,"room_id":%q,"content":%s,"origin_server_ts":1,"depth":%d%s}`,
		e.Type, sender, r.id, content, r.depth, sk)
	err := r.s.WriteEvents(context.Background(), func(tx store.EventTx) error {
		_, err := tx.InsertEvent(context.Background(), store.NewEvent{Event: e})
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.ids = append(r.ids, e.EventID)
	return e.EventID
}

func (r *room) msg() string                  { return r.write("msg", "@alice:hub", "", "") }
func (r *room) hv(v string) string           { return r.write("hv", "@alice:hub", "", v) }
func (r *room) member(user, m string) string { return r.write("member", user, user, m) }

// syncOnce answers one /sync for user as of the store's head.
func syncOnce(t testing.TB, a *API, user string, since int64, limit int) *Response {
	t.Helper()
	ctx := context.Background()
	heads, err := a.st.StreamHeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mems, err := a.st.UserMemberships(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.compute(ctx, Request{UserID: user, TimelineLimit: limit}, token{pos: since}, mems, heads.Pos, &heads)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func timelineIDs(tl Timeline) []string {
	var out []string
	for _, e := range tl.Events {
		out = append(out, e.EventID)
	}
	return out
}

// TestSyncVisibility: a late joiner's initial sync hides what the room's
// visibility hides, and a member's incremental sync (the hot path) costs
// no visibility query at all.
func TestSyncVisibility(t *testing.T) {
	a, cs := testAPI(t)
	const bob = "@bob:hub"
	r := newRoom(t, a.st.(store.Store), "!joined:hub")
	r.member("@alice:hub", "join")
	r.hv("joined")
	hidden := []string{r.msg(), r.msg()}
	r.member(bob, "invite")
	hidden = append(hidden, r.msg())
	join := r.member(bob, "join")
	after := r.msg()

	resp := syncOnce(t, a, bob, 0, 50)
	got := timelineIDs(resp.Rooms.Join[r.id].Timeline)
	for _, h := range hidden {
		if slices.Contains(got, h) {
			t.Errorf("initial sync shows %s from before the join: %v", h, got)
		}
	}
	if !slices.Contains(got, join) || !slices.Contains(got, after) {
		t.Errorf("initial sync timeline %v lacks the join or what followed", got)
	}
	if n := cs.changes.Load(); n != 1 {
		t.Errorf("initial sync read the visibility changes %d times, want 1", n)
	}

	// Incremental: one new message, and a limit that reaches back before
	// the token but not before the join.
	heads, _ := a.st.StreamHeads(context.Background())
	since := heads.Pos
	newer := r.msg()
	cs.changes.Store(0)
	resp = syncOnce(t, a, bob, since, 2)
	if got := timelineIDs(resp.Rooms.Join[r.id].Timeline); !slices.Equal(got, []string{newer}) {
		t.Errorf("incremental timeline = %v, want [%s]", got, newer)
	}
	if n, m := cs.changes.Load(), cs.stateAt.Load(); n != 0 || m != 0 {
		t.Errorf("incremental sync of a member made %d visibility and %d state-at reads, want none", n, m)
	}

	// Bob leaves; what follows never reaches him.
	heads, _ = a.st.StreamHeads(context.Background())
	since = heads.Pos
	last := r.msg()
	leave := r.member(bob, "leave")
	later := r.msg()
	resp = syncOnce(t, a, bob, since, 10)
	lr := resp.Rooms.Leave[r.id]
	if lr == nil {
		t.Fatalf("left room not in the leave section")
	}
	if got := timelineIDs(lr.Timeline); !slices.Equal(got, []string{last, leave}) {
		t.Errorf("left room timeline = %v, want [%s %s] (not %s)", got, last, leave, later)
	}
	if _, ok := resp.Rooms.Join[r.id]; ok {
		t.Errorf("left room still joined")
	}
}

// BenchmarkSyncIncremental is the /sync hot path: a member of a shared
// room with one new message since the token.
func BenchmarkSyncIncremental(b *testing.B) {
	a, _ := testAPI(b)
	r := newRoom(b, a.st.(store.Store), "!bench:hub")
	r.member("@alice:hub", "join")
	r.hv("shared")
	for i := range 20 {
		r.member(fmt.Sprintf("@u%d:hub", i), "join")
	}
	for range 100 {
		r.msg()
	}
	heads, _ := a.st.StreamHeads(context.Background())
	r.msg()
	since := heads.Pos
	for b.Loop() {
		syncOnce(b, a, "@u3:hub", since, 10)
	}
}
