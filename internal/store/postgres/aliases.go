package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// Aliases.

func (s *Store) PutAlias(ctx context.Context, alias, roomID, creator string) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO aliases (alias, room_id, creator, created_at) VALUES ($1, $2, $3, now())
		ON CONFLICT (alias) DO NOTHING`, alias, roomID, creator)
	if err != nil {
		return fmt.Errorf("postgres: put alias %q: %w", alias, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: put alias %q: %w", alias, store.ErrExists)
	}
	return nil
}

func (s *Store) ResolveAlias(ctx context.Context, alias string) (string, error) {
	var roomID string
	err := s.pool.QueryRow(ctx, `SELECT room_id FROM aliases WHERE alias = $1`, alias).Scan(&roomID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: alias %q: %w", alias, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: alias %q: %w", alias, err)
	}
	return roomID, nil
}

func (s *Store) DeleteAlias(ctx context.Context, alias string) error {
	return s.execOne(ctx, "delete alias "+alias, `DELETE FROM aliases WHERE alias = $1`, alias)
}
