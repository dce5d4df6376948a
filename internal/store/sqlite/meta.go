package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/eimis-hub/eimis/internal/store"
)

// Meta.

func (s *Store) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.rq.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: meta %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: meta %q: %w", key, err)
	}
	return v, nil
}

func (s *Store) PutMeta(ctx context.Context, key, value string) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("sqlite: put meta %q: %w", key, err)
	}
	return nil
}
