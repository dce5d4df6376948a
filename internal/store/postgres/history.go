package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// StateAt picks, per (type, state_key), the highest position at or below
// pos from the events_state_history index alone, then reads those rows.
func (s *Store) StateAt(ctx context.Context, roomID string, pos int64) ([]store.Event, error) {
	return queryEvents(ctx, s.pool, "state at", `SELECT `+eventCols+` FROM events e WHERE e.pos IN (
		SELECT MAX(pos) FROM events WHERE room_id = $1 AND state_key IS NOT NULL AND pos > 0 AND pos <= $2
		GROUP BY type, state_key) ORDER BY e.pos`, roomID, pos)
}

func (s *Store) StateEventAt(ctx context.Context, roomID, evType, stateKey string, pos int64) (*store.Event, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventCols+` FROM events e
		WHERE e.room_id = $1 AND e.type = $2 AND e.state_key = $3 AND e.pos > 0 AND e.pos <= $4
		ORDER BY e.pos DESC LIMIT 1`, roomID, evType, stateKey, pos))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: state %q/%q in %q at %d: %w", evType, stateKey, roomID, pos, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: state %q/%q in %q at %d: %w", evType, stateKey, roomID, pos, err)
	}
	return &e, nil
}

func (s *Store) VisibilityChanges(ctx context.Context, roomID, userID string) ([]store.Event, error) {
	return queryEvents(ctx, s.pool, "visibility changes", `SELECT `+eventCols+` FROM events e
		WHERE e.room_id = $1 AND e.type = 'm.room.member' AND e.state_key = $2 AND e.pos > 0
		UNION ALL
		SELECT `+eventCols+` FROM events e
		WHERE e.room_id = $1 AND e.type = 'm.room.history_visibility' AND e.state_key = '' AND e.pos > 0
		ORDER BY 1`, roomID, userID)
}
