package syncapi

import (
	"context"
	"errors"
	"math"
	"slices"
	"sort"

	"github.com/tidwall/gjson"

	"github.com/eimis-hub/eimis/internal/store"
)

// History visibility is decided here and nowhere else: every read path
// (/sync, /messages, /event, /context, /state, /members, /joined_members,
// /aliases, /relations) asks a View.
//
// The rules are the Client-Server API's ("Room History Visibility"),
// evaluated on the state of the room *before* each event:
//
//  1. world_readable at the event: anyone may see it;
//  2. the user was joined: allow;
//  3. shared, and the user joined at some point after the event: allow;
//  4. invited, and the user was invited: allow;
//  5. otherwise deny.
//
// A m.room.history_visibility event is visible if the visibility before
// or after it allows it, and so is the user's own m.room.member event
// with their membership before or after it. A missing or unknown value
// counts as shared, as the spec says (hub rooms are created shared).
//
// Rooms are linear today, so "the state before the event at position p"
// is whatever the last change below p left, and what a user may see is a
// list of position ranges computed once per request from one query
// (store.VisibilityChanges). When federation turns rooms into DAGs, the
// state lookup behind newView and stateUpTo is what changes; callers only
// use View.

// ErrEventNotVisible is an event that does not exist, is in another room
// or that the user may not see: the spec answers all three with 404, so a
// reader cannot tell them apart.
var ErrEventNotVisible = errors.New("event not found")

const (
	visWorldReadable = "world_readable"
	visShared        = "shared"
	visInvited       = "invited"
	visJoined        = "joined"

	// noPos is before the first position (positions start at 1), endPos
	// after the last one: a span ending there has no end yet.
	noPos  = int64(0)
	endPos = int64(math.MaxInt64)
)

// span is a range of stream positions, both ends included.
type span struct{ lo, hi int64 }

// change is one event that moves what a user may see of a room: the
// user's own membership, or the room's history visibility.
type change struct {
	pos        int64
	membership bool   // true: the user's m.room.member event
	value      string // the membership, or the history visibility, it sets
}

// View is what one user may see of one room, for one request.
type View struct {
	roomID string
	spans  []span // ascending, disjoint, not adjacent
	// stateUpTo is the position whose state the user may read: endPos for
	// the current state (members, world-readable rooms), the end of their
	// last membership for former members, noPos for none.
	stateUpTo int64
}

// changesOf reads the store's visibility changes of a room for a user.
func changesOf(evs []store.Event) []change {
	out := make([]change, 0, len(evs))
	for _, e := range evs {
		if e.StateKey == nil {
			continue
		}
		switch e.Type {
		case "m.room.member":
			out = append(out, change{pos: e.Pos, membership: true, value: e.Membership})
		case "m.room.history_visibility":
			out = append(out, change{pos: e.Pos, value: gjson.GetBytes(e.JSON, "content.history_visibility").Str})
		}
	}
	return out
}

// newView computes a View from a room's changes, ascending by position.
func newView(roomID string, changes []change) *View {
	v := &View{roomID: roomID, spans: visibleSpans(changes)}
	vis, mem, lastJoin := visShared, "", -1
	for i, c := range changes {
		if c.membership {
			mem = c.value
			if mem == "join" {
				lastJoin = i
			}
		} else {
			vis = normalise(c.value)
		}
	}
	switch {
	case mem == "join" || vis == visWorldReadable:
		v.stateUpTo = endPos
	case lastJoin >= 0:
		// The membership change that ended the last join (a leave, a kick,
		// a ban): the user saw the room up to and including it.
		for _, c := range changes[lastJoin+1:] {
			if c.membership {
				v.stateUpTo = c.pos
				break
			}
		}
	}
	return v
}

func normalise(vis string) string {
	switch vis {
	case visWorldReadable, visShared, visInvited, visJoined:
		return vis
	}
	return visShared
}

// allowed is the spec's rule for an event sent while the room's
// visibility was vis and the user's membership mem; joinsLater tells
// whether the user joined the room at some point after it.
func allowed(vis, mem string, joinsLater bool) bool {
	switch {
	case vis == visWorldReadable, mem == "join":
		return true
	case vis == visShared:
		return joinsLater
	case vis == visInvited:
		return mem == "invite"
	}
	return false
}

// visibleSpans turns the changes into the position ranges the user may
// see. Between two changes nothing that decides visibility moves, so each
// gap is wholly visible or not; each change is judged on its own with the
// before-or-after rule.
func visibleSpans(changes []change) []span {
	// joinsFrom[i]: the user joins at changes[i] or later.
	joinsFrom := make([]bool, len(changes)+1)
	for i := len(changes) - 1; i >= 0; i-- {
		joinsFrom[i] = joinsFrom[i+1] || (changes[i].membership && changes[i].value == "join")
	}
	var out []span
	add := func(lo, hi int64) {
		if lo > hi {
			return
		}
		if n := len(out); n > 0 && out[n-1].hi >= lo-1 {
			out[n-1].hi = max(out[n-1].hi, hi)
			return
		}
		out = append(out, span{lo, hi})
	}
	vis, mem, prev := visShared, "", noPos
	for i, c := range changes {
		if allowed(vis, mem, joinsFrom[i]) {
			add(prev+1, c.pos-1)
		}
		later := joinsFrom[i+1]
		ok := allowed(vis, mem, later)
		if c.membership {
			ok = ok || allowed(vis, c.value, later)
			mem = c.value
		} else {
			after := normalise(c.value)
			ok = ok || allowed(after, mem, later)
			vis = after
		}
		if ok {
			add(c.pos, c.pos)
		}
		prev = c.pos
	}
	if allowed(vis, mem, false) {
		add(prev+1, endPos)
	}
	return out
}

// Any reports whether the user may see anything of the room at all.
func (v *View) Any() bool { return len(v.spans) > 0 }

// CanSee reports whether the user may see the room's event at pos.
func (v *View) CanSee(pos int64) bool {
	i := sort.Search(len(v.spans), func(i int) bool { return v.spans[i].hi >= pos })
	return i < len(v.spans) && v.spans[i].lo <= pos
}

// Visible reports whether the user may see e.
func (v *View) Visible(e store.Event) bool { return e.RoomID == v.roomID && v.CanSee(e.Pos) }

// Filter keeps the events the user may see, in order.
func (v *View) Filter(evs []store.Event) []store.Event {
	out := evs[:0:0]
	for _, e := range evs {
		if v.Visible(e) {
			out = append(out, e)
		}
	}
	return out
}

// within clips the visible spans to positions (from, to], in the order a
// read in direction dir walks them.
func (v *View) within(from, to int64, dir store.Direction) []span {
	var out []span
	for _, s := range v.spans {
		lo, hi := max(s.lo, from+1), min(s.hi, to)
		if lo <= hi {
			out = append(out, span{lo, hi})
		}
	}
	if dir == store.Backward {
		slices.Reverse(out)
	}
	return out
}

// lastVisible is the end of the last visible span, endPos if it has none.
func (v *View) lastVisible() int64 {
	if len(v.spans) == 0 {
		return noPos
	}
	return v.spans[len(v.spans)-1].hi
}

// View loads what userID may see of roomID, with one query. It fails with
// ErrNotVisible when the user may see nothing of the room at all.
func (a *API) View(ctx context.Context, roomID, userID string) (*View, error) {
	evs, err := a.st.VisibilityChanges(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	v := newView(roomID, changesOf(evs))
	if !v.Any() {
		return nil, ErrNotVisible
	}
	return v, nil
}

// events reads up to limit events of the room the view lets the user see,
// with positions in (from, to], oldest first (Forward) or newest first
// (Backward). It queries only visible spans, so a page is never emptied
// by filtering and pagination never walks through hidden history.
func (a *API) events(ctx context.Context, v *View, from, to int64, limit int, dir store.Direction) ([]store.Event, error) {
	if limit <= 0 {
		return nil, nil // RoomEvents reads a limit of 0 as "no limit"
	}
	var out []store.Event
	for _, s := range v.within(from, to, dir) {
		evs, err := a.st.RoomEvents(ctx, v.roomID, s.lo-1, s.hi, limit-len(out), dir)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}

// Event loads an event of the room if the user may see it, else
// ErrEventNotVisible.
func (a *API) Event(ctx context.Context, v *View, eventID string) (*store.Event, error) {
	ev, err := a.st.EventByID(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !v.Visible(*ev)) {
		return nil, ErrEventNotVisible
	}
	return ev, err
}

// State is the room state the user may read: the current state for a
// member or in a world-readable room, the state as of their departure for
// a former member. Anyone else (an invitee, say) gets ErrNotVisible.
func (a *API) State(ctx context.Context, v *View) ([]store.Event, error) {
	switch v.stateUpTo {
	case noPos:
		return nil, ErrNotVisible
	case endPos:
		return a.st.CurrentState(ctx, v.roomID)
	}
	return a.st.StateAt(ctx, v.roomID, v.stateUpTo)
}

// StateEvent is one entry of State; ErrEventNotVisible when absent.
func (a *API) StateEvent(ctx context.Context, v *View, evType, stateKey string) (*store.Event, error) {
	var ev *store.Event
	var err error
	switch v.stateUpTo {
	case noPos:
		return nil, ErrNotVisible
	case endPos:
		ev, err = a.st.CurrentStateEvent(ctx, v.roomID, evType, stateKey)
	default:
		ev, err = a.st.StateEventAt(ctx, v.roomID, evType, stateKey, v.stateUpTo)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrEventNotVisible
	}
	return ev, err
}

// StateAt is the room state as of a pagination or sync token (the `at` of
// /members), never past what State shows. The user must be able to see
// the room's last event at that point, else ErrNotVisible: a member who
// joined a `joined` room cannot read who was there before them.
func (a *API) StateAt(ctx context.Context, v *View, token string) ([]store.Event, error) {
	at, err := ParsePos(token)
	if err != nil {
		return nil, err
	}
	if v.stateUpTo == noPos {
		return nil, ErrNotVisible
	}
	at = min(at, v.stateUpTo)
	last, err := a.st.RoomEvents(ctx, v.roomID, 0, at, 1, store.Backward)
	if err != nil {
		return nil, err
	}
	if len(last) == 0 {
		return nil, nil // before the room existed
	}
	if !v.CanSee(last[0].Pos) {
		return nil, ErrNotVisible
	}
	return a.st.StateAt(ctx, v.roomID, last[0].Pos)
}
