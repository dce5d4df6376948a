package store

import (
	"context"
	"encoding/json"
)

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

// Heads are the highest committed positions, overall and per kind. A
// kind's head is at most Pos; a database created before the per-kind
// heads existed starts them at its position then ("may have changed").
type Heads struct {
	Pos         int64
	Membership  int64
	Receipt     int64
	AccountData int64
}

// SyncStore holds what /sync reads besides events: the stream heads,
// account data, receipts and filters.
type SyncStore interface {
	MaxPos(ctx context.Context) (int64, error)
	// StreamHeads reads MaxPos with the last positions of membership
	// events, receipts and account data, from one row: /sync skips the
	// queries for kinds that did not move past the client's token.
	StreamHeads(ctx context.Context) (Heads, error)

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
}
