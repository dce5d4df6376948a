package syncapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// ErrNotVisible is a read of a room the user may not see.
var ErrNotVisible = errors.New("you are not allowed to see this room")

// MessagesResponse is the /messages body.
type MessagesResponse struct {
	Chunk []rooms.ClientEvent `json:"chunk"`
	Start string              `json:"start"`
	End   string              `json:"end,omitempty"`
	State []rooms.ClientEvent `json:"state"`
}

// Messages pages through a room's timeline in topological order (depth,
// then stream position), showing only what the user may see. Tokens name
// a gap in that order (pageToken): backwards from it returns the events
// before the gap, forwards the events after it. A stream token (from
// /sync, or from before topological paging) names the gap after the
// room's last event at or below its position.
func (a *API) Messages(ctx context.Context, userID, roomID, from string, backward bool, limit int) (*MessagesResponse, error) {
	v, err := a.View(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 1000)
	var gap store.TopoPos // the start of the room
	switch {
	case from != "":
		if gap, err = a.parsePage(ctx, roomID, from); err != nil {
			return nil, err
		}
	case backward:
		// From the end of what the user may see: a former member's
		// token stops at their departure.
		pos := v.lastVisible()
		if pos == endPos {
			if pos, err = a.st.MaxPos(ctx); err != nil {
				return nil, err
			}
		}
		if gap, err = a.gapAfterPos(ctx, roomID, pos); err != nil {
			return nil, err
		}
	}
	resp := &MessagesResponse{Start: pageToken(gap), Chunk: []rooms.ClientEvent{}, State: []rooms.ClientEvent{}}
	dir := store.Forward
	if backward {
		dir = store.Backward
	}
	evs, err := a.topoEvents(ctx, v, gap, limit, dir)
	if err != nil {
		return nil, err
	}
	if resp.Chunk, err = rooms.ToClientEvents(evs, true); err != nil {
		return nil, err
	}
	if len(evs) == limit {
		last := evs[len(evs)-1].Topo()
		if backward {
			last = gapBefore(last)
		}
		resp.End = pageToken(last)
	}
	return resp, nil
}

// ContextResponse is the /context body.
type ContextResponse struct {
	Event        rooms.ClientEvent   `json:"event"`
	EventsBefore []rooms.ClientEvent `json:"events_before"`
	EventsAfter  []rooms.ClientEvent `json:"events_after"`
	Start        string              `json:"start"`
	End          string              `json:"end"`
	State        []rooms.ClientEvent `json:"state"`
}

// Context is an event with what surrounds it, all of it filtered by what
// the user may see; the state is the room's at the last event returned,
// as the spec says, not the current state. limit is shared between the
// events before and after, as Synapse does.
func (a *API) Context(ctx context.Context, v *View, eventID string, limit int) (*ContextResponse, error) {
	ev, err := a.Event(ctx, v, eventID)
	if err != nil {
		return nil, err
	}
	before, err := a.topoEvents(ctx, v, gapBefore(ev.Topo()), limit/2, store.Backward)
	if err != nil {
		return nil, err
	}
	after, err := a.topoEvents(ctx, v, ev.Topo(), limit-limit/2, store.Forward)
	if err != nil {
		return nil, err
	}
	resp := &ContextResponse{Start: pageToken(gapBefore(ev.Topo())), End: pageToken(ev.Topo())}
	if len(before) > 0 {
		resp.Start = pageToken(gapBefore(before[len(before)-1].Topo()))
	}
	last := ev.Pos
	if len(after) > 0 {
		last = after[len(after)-1].Pos
		resp.End = pageToken(after[len(after)-1].Topo())
	}
	state, err := a.st.StateAt(ctx, v.roomID, last)
	if err != nil {
		return nil, err
	}
	if resp.Event, err = rooms.ToClientEvent(*ev, true); err != nil {
		return nil, err
	}
	if resp.EventsBefore, err = rooms.ToClientEvents(before, true); err != nil {
		return nil, err
	}
	if resp.EventsAfter, err = rooms.ToClientEvents(after, true); err != nil {
		return nil, err
	}
	if resp.State, err = rooms.ToClientEvents(state, true); err != nil {
		return nil, err
	}
	return resp, nil
}

// Pagination tokens: "t<depth>_<pos>" names the gap just after the event
// at (depth, pos) in the room's topological order. Tokens are opaque to
// clients; stream tokens ("s…") stay accepted wherever a pagination token
// is.

func pageToken(gap store.TopoPos) string { return fmt.Sprintf("t%d_%d", gap.Depth, gap.Pos) }

// gapBefore is the gap just before the event at at.
func gapBefore(at store.TopoPos) store.TopoPos {
	return store.TopoPos{Depth: at.Depth, Pos: at.Pos - 1}
}

// parseTopo reads a "t" token.
func parseTopo(s string) (store.TopoPos, bool, error) {
	rest, ok := strings.CutPrefix(s, "t")
	if !ok {
		return store.TopoPos{}, false, nil
	}
	d, p, ok := strings.Cut(rest, "_")
	if !ok {
		return store.TopoPos{}, true, ErrBadToken
	}
	depth, err1 := strconv.ParseInt(d, 10, 64)
	pos, err2 := strconv.ParseInt(p, 10, 64)
	if err1 != nil || err2 != nil || depth < 0 || pos == math.MinInt64 {
		return store.TopoPos{}, true, ErrBadToken
	}
	return store.TopoPos{Depth: depth, Pos: pos}, true, nil
}

// parsePage reads a pagination token of the room.
func (a *API) parsePage(ctx context.Context, roomID, s string) (store.TopoPos, error) {
	if gap, ok, err := parseTopo(s); ok {
		return gap, err
	}
	pos, err := ParsePos(s)
	if err != nil {
		return store.TopoPos{}, err
	}
	return a.gapAfterPos(ctx, roomID, pos)
}

// gapAfterPos is the gap after the room's last event at or below stream
// position pos (the start of the room if there is none).
func (a *API) gapAfterPos(ctx context.Context, roomID string, pos int64) (store.TopoPos, error) {
	last, err := a.st.RoomEvents(ctx, roomID, noPos, pos, 1, store.Backward)
	if err != nil || len(last) == 0 {
		return store.TopoPos{}, err
	}
	return last[0].Topo(), nil
}

// topoEvents reads up to limit events of the room the view lets the user
// see, after the gap (Forward, ascending) or before it (Backward,
// descending) in topological order. The store reads only positions
// within the user's visible spans' bounds; events in the holes between
// spans are dropped here, and the read goes on until the page is full or
// the room has no more. Events without a live position (history that
// arrived late) are not visible: visibility is decided by stream position.
func (a *API) topoEvents(ctx context.Context, v *View, gap store.TopoPos, limit int, dir store.Direction) ([]store.Event, error) {
	if limit <= 0 || !v.Any() {
		return nil, nil
	}
	lo, hi := v.spans[0].lo, v.spans[len(v.spans)-1].hi
	from := gap
	if dir == store.Backward {
		from.Pos++ // before the gap: the event at gap itself included
	}
	var out []store.Event
	for len(out) < limit {
		want := limit - len(out)
		evs, err := a.st.RoomEventsTopo(ctx, v.roomID, from, want, dir, max(lo, 1), hi)
		if err != nil {
			return nil, err
		}
		out = append(out, v.Filter(evs)...)
		if len(evs) < want {
			break
		}
		from = evs[len(evs)-1].Topo()
	}
	return out, nil
}
