// Package store is the hub's persistence seam. Two dialects implement it
// (sqlite for the embedded default, postgres for production) and one
// conformance suite (storetest) holds both to the same behaviour.
//
// Positions: every row that /sync must notice (events, account data,
// receipts) takes its position from one hub-wide, strictly increasing
// sequence. Positions are only allocated inside a write that holds the
// store's global stream lock, so positions become visible in commit order:
// a reader that sees position N has already seen every position below N.
// That is what makes a single integer a correct /sync token across several
// hub instances sharing one database.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
)

// Account is a local user.
type Account struct {
	Localpart    string
	PasswordHash string // bcrypt; empty means password login is disabled
	Admin        bool
	DisplayName  string
	AvatarURL    string
	CreatedAt    time.Time
}

// Device is one login session of an account. The access token itself is
// never stored: only its SHA-256 (TokenHash).
type Device struct {
	Localpart   string
	DeviceID    string
	DisplayName string
	TokenHash   []byte
	CreatedAt   time.Time
	LastSeen    time.Time
}

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

// AccountData is a global (RoomID == "") or per-room account data entry.
type AccountData struct {
	UserID  string
	RoomID  string
	Type    string
	Content json.RawMessage
	Pos     int64
}

// Receipt is a read receipt (m.read, m.read.private). The fully-read
// marker is room account data, not a receipt.
type Receipt struct {
	RoomID  string
	UserID  string
	Type    string
	EventID string
	TS      int64
	Pos     int64
}

// LikePattern escapes term for a LIKE … ESCAPE '\' pattern matching it
// anywhere, so a user's "%" or "_" is not a wildcard.
func LikePattern(term string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(term)) + "%"
}

// Heads are the highest committed positions, overall and per kind. A
// kind's head is at most Pos; a database created before the per-kind
// heads existed starts them at its position then ("may have changed").
type Heads struct {
	Pos         int64
	Membership  int64
	Receipt     int64
	AccountData int64
}

// OutboxEntry is an accepted event not yet confirmed published to NATS.
type OutboxEntry struct {
	Pos     int64
	EventID string
	RoomID  string
}

// Direction of a timeline read.
type Direction int

const (
	Forward  Direction = iota // ascending positions
	Backward                  // descending positions
)

// Store is everything the hub persists. Implementations must be safe for
// concurrent use.
type Store interface {
	// Ping checks the database is reachable (readiness).
	Ping(ctx context.Context) error
	Close() error

	// Accounts and devices.
	CreateAccount(ctx context.Context, a Account) error // ErrExists
	GetAccount(ctx context.Context, localpart string) (*Account, error)
	// SearchAccounts finds accounts whose localpart or display name
	// contains term (case-insensitive): exact matches first, then
	// prefixes, then the rest. PasswordHash is never filled.
	SearchAccounts(ctx context.Context, term string, limit int) ([]Account, error)
	SetDisplayName(ctx context.Context, localpart, name string) error
	SetAvatarURL(ctx context.Context, localpart, url string) error
	CreateDevice(ctx context.Context, d Device) error // replaces a device with the same ID
	DeviceByTokenHash(ctx context.Context, tokenHash []byte) (*Device, error)
	ListDevices(ctx context.Context, localpart string) ([]Device, error)
	DeleteDevice(ctx context.Context, localpart, deviceID string) error
	DeleteAllDevices(ctx context.Context, localpart string) error
	TouchDevice(ctx context.Context, localpart, deviceID string, at time.Time) error

	// WriteEvents runs fn while holding the global stream lock (a Postgres
	// advisory lock held to commit; SQLite's single writer), in one
	// transaction. Everything fn inserts commits together or not at all.
	WriteEvents(ctx context.Context, fn func(tx EventTx) error) error

	// Reads for /sync, /messages and the room server.
	MaxPos(ctx context.Context) (int64, error)
	// StreamHeads reads MaxPos with the last positions of membership
	// events, receipts and account data, from one row: /sync skips the
	// queries for kinds that did not move past the client's token.
	StreamHeads(ctx context.Context) (Heads, error)
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

	// Aliases.
	PutAlias(ctx context.Context, alias, roomID, creator string) error // ErrExists
	ResolveAlias(ctx context.Context, alias string) (string, error)
	DeleteAlias(ctx context.Context, alias string) error

	// Account data, receipts (stream positions are allocated under the
	// global stream lock).
	PutAccountData(ctx context.Context, d AccountData) (int64, error)
	GetAccountData(ctx context.Context, userID, roomID, typ string) (*AccountData, error)
	AccountDataSince(ctx context.Context, userID string, from, to int64) ([]AccountData, error)
	PutReceipt(ctx context.Context, r Receipt) (int64, error)
	ReceiptsSince(ctx context.Context, roomIDs []string, from, to int64) ([]Receipt, error)

	// Filters.
	PutFilter(ctx context.Context, userID string, filter json.RawMessage) (string, error)
	GetFilter(ctx context.Context, userID, filterID string) (json.RawMessage, error)

	// Outbox: the relay to NATS.
	PendingOutbox(ctx context.Context, after int64, limit int) ([]OutboxEntry, error) // pos > after
	DeleteOutbox(ctx context.Context, positions []int64) error

	// Key/value for small hub-level facts (e.g. the schema owner's notes).
	GetMeta(ctx context.Context, key string) (string, error)
	PutMeta(ctx context.Context, key, value string) error

	DirectoryStore
	AuditStore
	OperatorStore
	TrustStore
	BridgeStore
	AppserviceStore
	HistoryStore
	ConsentStore
	DAGReader
}

// ErrImportSuperseded is returned by a DirectoryImport whose generation was
// taken over by a later BeginDirectoryImport (two imports run at once, or
// one resumed after another started): only the newest import may commit.
var ErrImportSuperseded = errors.New("store: directory import superseded by a newer one")

// DirectoryStore persists the health directory as generations: an import
// writes a whole new generation beside the current one, in as many short
// transactions as it likes, and Commit switches to it in one transaction.
// Readers only ever see the current generation, so they get the old
// directory or the new one, never a mix of both.
type DirectoryStore interface {
	// BeginDirectoryImport starts a new generation. It discards whatever an
	// earlier import left unfinished (crash, abort that failed), and any
	// import still running loses its right to commit (ErrImportSuperseded).
	BeginDirectoryImport(ctx context.Context) (DirectoryImport, error)
	// DirectoryPractitioners streams the current generation in idNat order
	// from one consistent snapshot. An error from fn stops the read and is
	// returned wrapped.
	DirectoryPractitioners(ctx context.Context, fn func(DirectoryRecord) error) error
	// DirectoryStats describes the current generation; Generation is 0
	// before the first import.
	DirectoryStats(ctx context.Context) (DirectoryStats, error)
}

// DirectoryImport is one import in progress. It is not safe for concurrent
// use. After Commit or Abort it must not be used again, except that Abort
// after Commit is a no-op, so callers may defer Abort.
type DirectoryImport interface {
	// Add writes records into the new generation. An idNat already added
	// to this import is an error wrapping ErrExists.
	Add(ctx context.Context, recs []DirectoryRecord) error
	// Commit makes the new generation current. Practitioners of the
	// previous generation absent from the new one are carried over with
	// Active false, so "known but no longer registered" stays
	// distinguishable from "unknown"; inactivated counts those who were
	// active until now.
	Commit(ctx context.Context) (inactivated int, err error)
	// Abort discards the new generation; the current one is untouched.
	Abort(ctx context.Context) error
}

// DirectoryRecord is one practitioner as stored. The store does not
// interpret Professions and Activities (JSON arrays, written by the
// directory package).
type DirectoryRecord struct {
	IDNat       string
	RPPS        string
	Civility    string
	LastName    string
	FirstName   string
	Professions json.RawMessage
	Activities  json.RawMessage
	Active      bool
	// UpdatedAt is when an import wrote the record or, for a practitioner
	// carried over as inactive, when they were first found missing. Set by
	// the store; ignored by Add.
	UpdatedAt time.Time
}

// DirectoryStats describes the current directory generation.
type DirectoryStats struct {
	Generation int64
	Active     int
	Inactive   int
	ImportedAt time.Time // zero before the first import
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
