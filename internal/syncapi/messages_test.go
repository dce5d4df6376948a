package syncapi

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

// insertAt stores an event of r at a chosen depth (a fork's event arriving
// late, or history arriving into the past when historical).
func (r *room) insertAt(id string, depth int64, historical bool) {
	r.t.Helper()
	e := store.NewEvent{Event: store.Event{EventID: id, RoomID: r.id, Sender: "@bob:remote", Depth: depth, OriginTS: 1,
		Type: "m.room.message", JSON: fmt.Appendf(nil, `{"type":"m.room.message","sender":"@bob:remote","room_id":%q,"content":{},"depth":%d}`, r.id, depth)},
		Historical: historical}
	err := r.s.WriteEvents(context.Background(), func(tx store.EventTx) error {
		_, err := tx.InsertEvent(context.Background(), e)
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// pageAll pages /messages from `from` to the end, limit events a page.
func pageAll(t *testing.T, a *API, user, roomID, from string, backward bool, limit int) []string {
	t.Helper()
	var out []string
	for range 100 {
		resp, err := a.Messages(context.Background(), user, roomID, from, backward, limit)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Chunk {
			out = append(out, e.EventID)
		}
		if resp.End == "" {
			return out
		}
		from = resp.End
	}
	t.Fatal("pagination does not end")
	return nil
}

// TestMessagesTopological: /messages pages by depth, then position, not by
// stream position; history without a live position is not shown (its
// visibility cannot be decided by position); stream tokens still work.
func TestMessagesTopological(t *testing.T) {
	a, _ := testAPI(t)
	r := newRoom(t, a.st.(store.Store), "!topo:hub")
	r.member("@alice:hub", "join") // depth 1
	r.hv("shared")                 // 2
	m3 := r.msg()                  // 3
	m4 := r.msg()                  // 4
	sinceTok := token{pos: maxPosOf(t, a)}.String()
	// A fork's event at depth 3, stored live after depth 4.
	r.insertAt("$fork3", 3, false)
	// History arriving into the past, at depth 2.
	r.insertAt("$old2", 2, true)
	m5 := r.msg() // depth 5 (the room's counter)
	ids := r.ids
	wantBack := []string{m5, m4, "$fork3", m3, ids[1], ids[0]}
	for _, limit := range []int{1, 2, 4, 100} {
		if got := pageAll(t, a, "@alice:hub", r.id, "", true, limit); !slices.Equal(got, wantBack) {
			t.Errorf("backward, limit %d: %v, want %v", limit, got, wantBack)
		}
		wantFwd := slices.Clone(wantBack)
		slices.Reverse(wantFwd)
		if got := pageAll(t, a, "@alice:hub", r.id, "", false, limit); !slices.Equal(got, wantFwd) {
			t.Errorf("forward, limit %d: %v, want %v", limit, got, wantFwd)
		}
	}
	// A stream token (a /sync prev_batch) taken before the fork arrived
	// names the gap after m4: backwards from it is everything before m4
	// topologically (the fork's depth-3 event included), forwards what
	// follows it.
	if got := pageAll(t, a, "@alice:hub", r.id, sinceTok, true, 3); !slices.Equal(got, []string{m4, "$fork3", m3, ids[1], ids[0]}) {
		t.Errorf("backward from a stream token: %v", got)
	}
	if got := pageAll(t, a, "@alice:hub", r.id, sinceTok, false, 3); !slices.Equal(got, []string{m5}) {
		t.Errorf("forward from a stream token: %v", got)
	}
	// Topological tokens carry a stream position for /members?at=.
	resp, err := a.Messages(context.Background(), "@alice:hub", r.id, "", true, 1)
	if err != nil {
		t.Fatal(err)
	}
	if pos, err := ParsePos(resp.Start); err != nil || pos != maxPosOf(t, a) {
		t.Errorf("ParsePos(%q) = %d, %v; want the head %d", resp.Start, pos, err, maxPosOf(t, a))
	}
	for _, bad := range []string{"t", "t1", "tx_1", "t1_x", "t-1_2"} {
		if _, err := a.Messages(context.Background(), "@alice:hub", r.id, bad, true, 1); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
}

// TestMessagesTopologicalVisibility: a user who left sees nothing after
// their departure, whatever its depth, and nothing sent while the room
// was "joined" before their join (what came before the "joined" setting
// was "shared", so they see it).
func TestMessagesTopologicalVisibility(t *testing.T) {
	a, _ := testAPI(t)
	r := newRoom(t, a.st.(store.Store), "!tv:hub")
	r.member("@alice:hub", "join")
	r.hv("joined")
	hidden := r.msg()
	join := r.member("@bob:hub", "join")
	seen := r.msg()
	leave := r.member("@bob:hub", "leave")
	r.insertAt("$late-fork", 4, false) // low depth, stored after the leave
	r.msg()
	got := pageAll(t, a, "@bob:hub", r.id, "", true, 2)
	if want := []string{leave, seen, join, r.ids[1], r.ids[0]}; !slices.Equal(got, want) {
		t.Errorf("bob pages %v, want %v (not %s, not the fork stored after he left)", got, want, hidden)
	}
}

func maxPosOf(t *testing.T, a *API) int64 {
	t.Helper()
	p, err := a.st.MaxPos(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
