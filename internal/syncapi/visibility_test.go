package syncapi

import (
	"strings"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

// history describes a room's history as the user's view sees it, one
// word per event at positions 1, 2, …: "msg" (anything else), "hv:X" (the
// history visibility becomes X), "m:X" (the user's membership becomes X).
func history(t *testing.T, words string) []change {
	t.Helper()
	var out []change
	for i, w := range strings.Fields(words) {
		pos := int64(i + 1)
		switch {
		case w == "msg":
		case strings.HasPrefix(w, "hv:"):
			out = append(out, change{pos: pos, value: strings.TrimPrefix(w, "hv:")})
		case strings.HasPrefix(w, "m:"):
			out = append(out, change{pos: pos, membership: true, value: strings.TrimPrefix(w, "m:")})
		default:
			t.Fatalf("bad word %q", w)
		}
	}
	return out
}

// seen renders which of n events the view shows: "x" visible, "." not.
func seen(v *View, n int) string {
	var b strings.Builder
	for p := range n {
		if v.CanSee(int64(p + 1)) {
			b.WriteByte('x')
		} else {
			b.WriteByte('.')
		}
	}
	return b.String()
}

func TestVisibleEvents(t *testing.T) {
	cases := []struct {
		name, timeline string
		want           string // what the user may see of those events
		future         bool   // whether events not yet sent will be visible
		state          int64  // stateUpTo: noPos, endPos or a position
	}{
		// Invited, joined, then left: the four visibilities.
		{"shared", "hv:shared msg m:invite msg m:join msg m:leave msg", "xxxxxxx.", false, 7},
		{"invited", "hv:invited msg m:invite msg m:join msg m:leave msg", "x.xxxxx.", false, 7},
		// The first hv event is visible: before it, the room was shared (the
		// default) and the user joins later.
		{"joined", "hv:joined msg m:invite msg m:join msg m:leave msg", "x...xxx.", false, 7},
		{"world_readable", "hv:world_readable msg m:invite msg m:join msg m:leave msg", "xxxxxxxx", true, endPos},
		// Still joined: everything from the join on, and what comes next.
		{"joined member", "hv:joined msg m:join msg", "x.xx", true, endPos},
		{"shared member", "hv:shared msg msg m:join msg", "xxxxx", true, endPos},
		{"invited member", "hv:invited msg m:invite msg m:join msg", "x.xxxx", true, endPos},
		// No visibility event at all: shared.
		{"no hv event", "msg msg m:join msg", "xxxx", true, endPos},
		{"unknown value is shared", "hv:secret msg m:join msg", "xxxx", true, endPos},
		// Left and came back: the gap is visible only in a shared room.
		{"rejoin shared", "hv:shared m:join msg m:leave msg m:join msg", "xxxxxxx", true, endPos},
		{"rejoin joined", "hv:joined m:join msg m:leave msg m:join msg", "xxxx.xx", true, endPos},
		{"rejoin invited", "hv:invited m:join m:leave msg m:invite msg m:join", "xxx.xxx", true, endPos},
		// Left twice: state as of the last departure.
		{"left twice", "hv:joined m:join m:leave msg m:join msg m:leave msg", "xxx.xxx.", false, 7},
		// Kicked or banned: the same as leaving.
		{"banned", "hv:shared m:join msg m:ban msg", "xxxx.", false, 4},
		// An invitee who never joined sees only what `invited` allows; in
		// a shared room, not even their own invite or refusal (the spec's
		// before-or-after rule allows neither).
		{"refused invite shared", "hv:shared msg m:invite msg m:leave msg", "......", false, noPos},
		{"refused invite invited", "hv:invited msg m:invite msg m:leave msg", "..xxx.", false, noPos},
		{"pending invite invited", "hv:invited msg m:invite msg", "..xx", true, noPos},
		{"pending invite joined", "hv:joined msg m:invite msg", "....", false, noPos},
		// A stranger sees world_readable periods, and the visibility events
		// that open and close them.
		{"stranger", "hv:shared msg hv:world_readable msg hv:joined msg", "..xxx.", false, noPos},
		{"stranger world_readable now", "hv:joined msg hv:world_readable msg", "..xx", true, endPos},
		// A former member of a world-readable room reads its current state.
		{"left world_readable", "hv:world_readable m:join msg m:leave msg", "xxxxx", true, endPos},
		// Visibility changes while a member: no effect while joined.
		{"tightened while joined", "hv:shared m:join msg hv:joined msg m:leave msg", "xxxxxx.", false, 6},
		// Tightened before an invitee joins: the shared part stays visible.
		{"tightened before join", "hv:shared msg hv:joined msg m:join msg", "xxx.xx", true, endPos},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := history(t, c.timeline)
			v := newView("!r:hub", ch)
			n := len(strings.Fields(c.timeline))
			if got := seen(v, n); got != c.want {
				t.Errorf("visible = %s, want %s (spans %v)", got, c.want, v.spans)
			}
			if got := v.CanSee(int64(n + 1000)); got != c.future {
				t.Errorf("future events visible = %v, want %v", got, c.future)
			}
			if v.stateUpTo != c.state {
				t.Errorf("stateUpTo = %d, want %d", v.stateUpTo, c.state)
			}
			if v.Any() != strings.Contains(c.want, "x") && !c.future {
				t.Errorf("Any() = %v for %s", v.Any(), c.want)
			}
			for i := 1; i < len(v.spans); i++ {
				if v.spans[i].lo <= v.spans[i-1].hi+1 {
					t.Errorf("spans not disjoint and apart: %v", v.spans)
				}
			}
		})
	}
}

func TestViewWithin(t *testing.T) {
	v := newView("!r:hub", history(t, "hv:joined m:join msg m:leave msg m:join msg"))
	// Visible: 1-4 and 6 onwards.
	cases := []struct {
		from, to int64
		backward bool
		want     []span
	}{
		{0, 7, false, []span{{1, 4}, {6, 7}}},
		{0, 7, true, []span{{6, 7}, {1, 4}}},
		{2, 5, false, []span{{3, 4}}},
		{4, 5, false, nil},
		{5, endPos, false, []span{{6, endPos}}},
	}
	for _, c := range cases {
		dir := store.Forward
		if c.backward {
			dir = store.Backward
		}
		got := v.within(c.from, c.to, dir)
		if len(got) != len(c.want) {
			t.Errorf("within(%d, %d, %v) = %v, want %v", c.from, c.to, c.backward, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("within(%d, %d, %v) = %v, want %v", c.from, c.to, c.backward, got, c.want)
			}
		}
	}
}
