package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// Aliases.

func (s *Store) PutAlias(ctx context.Context, alias, roomID, creator string) error {
	res, err := s.w.ExecContext(ctx, `INSERT INTO aliases (alias, room_id, creator, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (alias) DO NOTHING`, alias, roomID, creator, ms(time.Now()))
	if err != nil {
		return fmt.Errorf("sqlite: put alias %q: %w", alias, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: put alias %q: %w", alias, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: put alias %q: %w", alias, store.ErrExists)
	}
	return nil
}

func (s *Store) ResolveAlias(ctx context.Context, alias string) (string, error) {
	var roomID string
	err := s.rq.QueryRowContext(ctx, `SELECT room_id FROM aliases WHERE alias = ?`, alias).Scan(&roomID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: alias %q: %w", alias, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: alias %q: %w", alias, err)
	}
	return roomID, nil
}

func (s *Store) DeleteAlias(ctx context.Context, alias string) error {
	return s.execOne(ctx, "delete alias "+alias, `DELETE FROM aliases WHERE alias = ?`, alias)
}
