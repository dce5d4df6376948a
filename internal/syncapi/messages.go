package syncapi

import (
	"context"
	"errors"

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

// Messages pages through a room's timeline, showing only what the user
// may see. Tokens are stream positions: backwards from P returns events
// at or below P; forwards from P returns events above P.
func (a *API) Messages(ctx context.Context, userID, roomID, from string, backward bool, limit int) (*MessagesResponse, error) {
	v, err := a.View(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 1000)
	var pos int64
	switch {
	case from != "":
		if pos, err = ParsePos(from); err != nil {
			return nil, err
		}
	case backward:
		// From the end of what the user may see: a former member's
		// token stops at their departure.
		if pos = v.lastVisible(); pos == endPos {
			if pos, err = a.st.MaxPos(ctx); err != nil {
				return nil, err
			}
		}
	}
	resp := &MessagesResponse{Start: token{pos: pos}.String(), Chunk: []rooms.ClientEvent{}, State: []rooms.ClientEvent{}}
	var evs []store.Event
	if backward {
		evs, err = a.events(ctx, v, noPos, pos, limit, store.Backward)
	} else {
		evs, err = a.events(ctx, v, pos, endPos, limit, store.Forward)
	}
	if err != nil {
		return nil, err
	}
	if resp.Chunk, err = rooms.ToClientEvents(evs, true); err != nil {
		return nil, err
	}
	if len(evs) == limit {
		last := evs[len(evs)-1].Pos
		if backward {
			last--
		}
		resp.End = token{pos: last}.String()
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
	before, err := a.events(ctx, v, noPos, ev.Pos-1, limit/2, store.Backward)
	if err != nil {
		return nil, err
	}
	after, err := a.events(ctx, v, ev.Pos, endPos, limit-limit/2, store.Forward)
	if err != nil {
		return nil, err
	}
	resp := &ContextResponse{Start: token{pos: ev.Pos - 1}.String(), End: token{pos: ev.Pos}.String()}
	if len(before) > 0 {
		resp.Start = token{pos: before[len(before)-1].Pos - 1}.String()
	}
	last := ev.Pos
	if len(after) > 0 {
		last = after[len(after)-1].Pos
		resp.End = token{pos: last}.String()
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
