package store

import "context"

// HistoryStore answers "what did the room look like at stream position
// P?", which history visibility needs on every read path.
//
// Rooms are linear today (one forward extremity), so the state at an
// event is the latest state event of each (type, state_key) at or below
// its position. Federation will turn rooms into DAGs with state stored
// per event; these methods are the seam that change swaps.
type HistoryStore interface {
	// StateAt returns a room's state as of position pos (events at pos
	// included): for each (type, state_key), the latest state event with
	// a position at or below pos. Ascending by position.
	StateAt(ctx context.Context, roomID string, pos int64) ([]Event, error)
	// StateEventAt is one entry of StateAt; ErrNotFound when the room had
	// no such state at pos.
	StateEventAt(ctx context.Context, roomID, evType, stateKey string, pos int64) (*Event, error)
	// VisibilityChanges returns, ascending by position, everything that
	// decides which of a room's events userID may see: the room's
	// m.room.history_visibility events and userID's m.room.member events.
	VisibilityChanges(ctx context.Context, roomID, userID string) ([]Event, error)
}
