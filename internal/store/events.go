package store

import (
	"context"
	"encoding/json"
	"time"
)

// Room is the head of a room's event graph. Its forward extremities are in
// Extremities; LastEventID is the last live event stored (one of them, and
// a cheap "did the room move?" check), Depth the highest depth of a live
// event, StateGroup the state group of the current state (the resolved
// state of the extremities; 0 until first computed).
type Room struct {
	RoomID      string
	Version     string
	Creator     string
	LastEventID string
	Depth       int64
	StateGroup  int64
	CreatedAt   time.Time
}

// Event is a stored PDU plus where it sits in the hub's stream.
type Event struct {
	Pos      int64
	EventID  string
	RoomID   string
	Type     string
	StateKey *string
	Sender   string
	Depth    int64
	OriginTS int64
	// JSON is the full signed PDU as it goes over federation.
	JSON json.RawMessage
	// Membership is the membership value for m.room.member events, else "".
	Membership string
	// Door is where a local event entered the hub (internal/door's
	// String form); "" for events from before doors were recorded.
	Door string
	// Flags: outlier, soft-failed, rejected. Reads that serve clients only
	// ever return events with no flag set.
	Flags EventFlags
	// StateBefore and StateAfter are the state groups of the room state
	// before and after the event; 0 when unknown (outliers, rejected
	// events, events stored before the DAG layout).
	StateBefore int64
	StateAfter  int64
}

// NewEvent is what the room server hands to InsertEvent.
type NewEvent struct {
	Event
	// Txn, when set, records the client transaction that produced the event
	// in the same database transaction, so a retried send (even after a
	// restart) finds the event instead of creating a second one.
	Txn *TxnKey
	// PrevEvents are the event's prev_events, recorded as DAG edges.
	PrevEvents []string
	// Historical marks an event that arrives into the room's past
	// (backfill): like an event with a flag set, it takes a negative
	// position, so no /sync token covers it and it never wakes /sync, has
	// no outbox row, and changes neither the extremities nor current state.
	Historical bool
	// Local marks an event this hub built on top of its stored forward
	// extremities: no stored event can name it as a prev_event, so the
	// store records no DAG edges for it (the send path's cost). Events
	// from elsewhere record theirs, which is what "does a stored event
	// already reference this one?" needs: only they can arrive after a
	// child.
	Local bool
}

// Live reports whether e takes a live stream position: an event in the
// DAG (no flag) that is not historical.
func (e NewEvent) Live() bool { return e.Flags == 0 && !e.Historical }

// TxnKey scopes a client transaction ID as the Matrix spec does: per
// device and per request path. Scope is the path's meaning ("send/<room>/
// <type>", "redact/<room>/<event>"), so the same txnId reused for another
// room, event type or redaction target is a new request, not a retry.
type TxnKey struct {
	UserID   string
	DeviceID string
	Scope    string
	TxnID    string
}

// Membership is a user's current membership of one room.
type Membership struct {
	RoomID     string
	UserID     string
	Membership string // join, invite, leave, ban, knock
	EventID    string
	Pos        int64 // position of the membership event
}

// Direction of a timeline read.
type Direction int

const (
	Forward  Direction = iota // ascending positions
	Backward                  // descending positions
)

// EventStore is the room server's persistence: the one write path for
// events (WriteEvents) and the reads of events, rooms, state and
// memberships.
type EventStore interface {
	EventWriter
	EventReader
}

// EventWriter is the write path for events.
type EventWriter interface {
	// WriteEvents runs fn while holding the global stream lock (a Postgres
	// advisory lock held to commit; SQLite's single writer), in one
	// transaction. Everything fn inserts commits together or not at all.
	WriteEvents(ctx context.Context, fn func(tx EventTx) error) error
}

// EventReader reads events, rooms, current state and memberships (for
// /sync, /messages and the room server).
type EventReader interface {
	GetRoom(ctx context.Context, roomID string) (*Room, error)
	EventByID(ctx context.Context, eventID string) (*Event, error)
	EventsByID(ctx context.Context, eventIDs []string) ([]Event, error) // missing IDs are skipped
	// RoomEvents returns events of a room with from < pos <= to (Forward, the
	// first `limit` of them) or the last `limit` of them (Backward, returned
	// newest first).
	RoomEvents(ctx context.Context, roomID string, from, to int64, limit int, dir Direction) ([]Event, error)
	// StateEventsBetween returns the state events of a room with from < pos <= to, ascending.
	StateEventsBetween(ctx context.Context, roomID string, from, to int64) ([]Event, error)
	CurrentState(ctx context.Context, roomID string) ([]Event, error)
	CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (*Event, error)
	// UserMemberships returns the user's current membership in every room
	// where the user has one.
	UserMemberships(ctx context.Context, userID string) ([]Membership, error)
	// RoomMembers returns current memberships of a room, optionally only
	// those with the given membership value ("" = all).
	RoomMembers(ctx context.Context, roomID, membership string) ([]Membership, error)
	TxnEvent(ctx context.Context, k TxnKey) (string, error) // ErrNotFound
}

// EventTx is the room server's view inside WriteEvents.
type EventTx interface {
	GetRoom(ctx context.Context, roomID string) (*Room, error)
	CreateRoom(ctx context.Context, r Room) error // ErrExists
	TxnEvent(ctx context.Context, k TxnKey) (string, error)
	// TxnEvents and GetRooms are the batched forms the room server uses
	// once per transaction: one round trip for a whole batch of sends.
	// Keys and rooms not found are absent from the maps.
	TxnEvents(ctx context.Context, keys []TxnKey) (map[TxnKey]string, error)
	GetRooms(ctx context.Context, roomIDs []string) (map[string]*Room, error)
	CurrentState(ctx context.Context, roomID string) ([]Event, error)
	// GetEvent reads one event, seeing this transaction's own writes.
	GetEvent(ctx context.Context, eventID string) (*Event, error) // ErrNotFound
	// RedactEvent replaces an event's stored JSON with its redacted form
	// (same event ID, hashes and signatures, which cover the redacted form).
	RedactEvent(ctx context.Context, eventID string, redacted json.RawMessage) error // ErrNotFound
	// InsertEvent stores an event and returns its position.
	//
	// A live event (NewEvent.Live) takes the next stream position, gets an
	// outbox row and its txn record, and becomes the room's newest state:
	// its prev_events leave the forward extremities and it joins them
	// (unless a stored event already names it as a prev_event); the room
	// head moves to it (LastEventID, Depth as a maximum, StateGroup =
	// StateAfter) and, for a state event, current_state takes it. That is
	// right when the event extends every extremity (every local send);
	// otherwise the caller then sets the resolved state with
	// SetCurrentState in the same transaction.
	//
	// Any other event takes the next negative position (below every one
	// handed out before), with no outbox row, and changes neither the
	// extremities nor the room head nor current_state. Events without
	// flags (historical ones) still record their DAG edges.
	InsertEvent(ctx context.Context, e NewEvent) (int64, error)

	DAGTx
}
