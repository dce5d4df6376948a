package store

import (
	"context"
)

// OutboxEntry is an accepted event not yet confirmed published to NATS.
type OutboxEntry struct {
	Pos     int64
	EventID string
	RoomID  string
}

// OutboxStore is the relay to NATS: accepted events not yet confirmed
// published (EventTx.InsertEvent writes the rows).
type OutboxStore interface {
	PendingOutbox(ctx context.Context, after int64, limit int) ([]OutboxEntry, error) // pos > after
	DeleteOutbox(ctx context.Context, positions []int64) error
}
