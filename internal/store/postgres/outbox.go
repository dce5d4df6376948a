package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// Outbox.

// PendingOutbox returns up to limit entries above position after (all if
// limit <= 0), oldest first.
func (s *Store) PendingOutbox(ctx context.Context, after int64, limit int) ([]store.OutboxEntry, error) {
	var lim any
	if limit > 0 {
		lim = int64(limit)
	}
	rows, err := s.pool.Query(ctx, `SELECT pos, event_id, room_id FROM outbox WHERE pos > $1 ORDER BY pos LIMIT $2`, after, lim)
	if err != nil {
		return nil, fmt.Errorf("postgres: pending outbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.OutboxEntry, error) {
		var o store.OutboxEntry
		err := r.Scan(&o.Pos, &o.EventID, &o.RoomID)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: pending outbox: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteOutbox(ctx context.Context, positions []int64) error {
	if len(positions) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM outbox WHERE pos = ANY($1)`, positions); err != nil {
		return fmt.Errorf("postgres: delete outbox: %w", err)
	}
	return nil
}
