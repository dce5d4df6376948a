package syncapi

import (
	"context"
	"errors"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// ErrNotVisible is a read of a room the user may not see.
var ErrNotVisible = errors.New("you are not allowed to see this room")

// Visibility returns the last position the user may read in a room:
// everything while joined (history is "shared" in hub rooms), up to the
// leave for a former member, nothing otherwise.
func (a *API) Visibility(ctx context.Context, roomID, userID string) (int64, error) {
	ev, err := a.st.CurrentStateEvent(ctx, roomID, "m.room.member", userID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, ErrNotVisible
	} else if err != nil {
		return 0, err
	}
	switch ev.Membership {
	case "join":
		return a.st.MaxPos(ctx)
	case "leave", "ban":
		return ev.Pos, nil
	}
	return 0, ErrNotVisible
}

// MessagesResponse is the /messages body.
type MessagesResponse struct {
	Chunk []rooms.ClientEvent `json:"chunk"`
	Start string              `json:"start"`
	End   string              `json:"end,omitempty"`
	State []rooms.ClientEvent `json:"state"`
}

// Messages pages through a room's timeline. Tokens are stream positions:
// backwards from P returns events at or below P; forwards from P returns
// events above P.
func (a *API) Messages(ctx context.Context, userID, roomID, from string, backward bool, limit int) (*MessagesResponse, error) {
	upto, err := a.Visibility(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 1000)
	var pos int64
	if from == "" {
		if backward {
			pos = upto
		}
	} else if pos, err = ParsePos(from); err != nil {
		return nil, err
	}
	resp := &MessagesResponse{Start: token{pos: pos}.String(), Chunk: []rooms.ClientEvent{}, State: []rooms.ClientEvent{}}
	var evs []store.Event
	if backward {
		evs, err = a.st.RoomEvents(ctx, roomID, 0, min(pos, upto), limit, store.Backward)
	} else {
		evs, err = a.st.RoomEvents(ctx, roomID, pos, upto, limit, store.Forward)
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
