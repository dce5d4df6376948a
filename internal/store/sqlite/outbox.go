package sqlite

import (
	"context"
	"fmt"

	"github.com/eimis-hub/eimis/internal/store"
)

// Outbox.

// PendingOutbox returns up to limit entries above position after (all if
// limit <= 0), oldest first.
func (s *Store) PendingOutbox(ctx context.Context, after int64, limit int) ([]store.OutboxEntry, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.rq.QueryContext(ctx, `SELECT pos, event_id, room_id FROM outbox WHERE pos > ? ORDER BY pos LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending outbox: %w", err)
	}
	defer rows.Close()
	var out []store.OutboxEntry
	for rows.Next() {
		var o store.OutboxEntry
		if err := rows.Scan(&o.Pos, &o.EventID, &o.RoomID); err != nil {
			return nil, fmt.Errorf("sqlite: pending outbox: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: pending outbox: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteOutbox(ctx context.Context, positions []int64) error {
	if len(positions) == 0 {
		return nil
	}
	list, err := jsonList(positions)
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM outbox WHERE pos IN (SELECT value FROM json_each(?))`, list); err != nil {
		return fmt.Errorf("sqlite: delete outbox: %w", err)
	}
	return nil
}
