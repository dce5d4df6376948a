package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

func (s *Store) PutServerKeys(ctx context.Context, serverName string, keys []store.ServerKey, response []byte, validUntil time.Time) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: put keys of %s: %w", serverName, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	for _, k := range keys {
		var expired *time.Time
		if !k.ExpiredAt.IsZero() {
			e := k.ExpiredAt.UTC()
			expired = &e
		}
		if _, err := tx.Exec(ctx, `INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (server_name, key_id) DO UPDATE SET
				valid_until_ts = GREATEST(server_keys.valid_until_ts, excluded.valid_until_ts),
				expired_ts = COALESCE(server_keys.expired_ts, excluded.expired_ts)`,
			serverName, k.KeyID, k.PublicKey, k.ValidUntil.UTC(), expired); err != nil {
			return fmt.Errorf("postgres: put key %s of %s: %w", k.KeyID, serverName, err)
		}
	}
	if response != nil {
		if _, err := tx.Exec(ctx, `INSERT INTO server_key_responses (server_name, response, valid_until_ts, fetched_at)
			VALUES ($1, $2, $3, now())
			ON CONFLICT (server_name) DO UPDATE SET response = excluded.response,
				valid_until_ts = excluded.valid_until_ts, fetched_at = excluded.fetched_at`,
			serverName, response, validUntil.UTC()); err != nil {
			return fmt.Errorf("postgres: put key response of %s: %w", serverName, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: put keys of %s: %w", serverName, err)
	}
	return nil
}

func (s *Store) ServerKeys(ctx context.Context, serverName string) ([]store.ServerKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT key_id, public_key, valid_until_ts, expired_ts FROM server_keys
		WHERE server_name = $1 ORDER BY key_id`, serverName)
	if err != nil {
		return nil, fmt.Errorf("postgres: keys of %s: %w", serverName, err)
	}
	defer rows.Close()
	var out []store.ServerKey
	for rows.Next() {
		k := store.ServerKey{ServerName: serverName}
		var expired *time.Time
		if err := rows.Scan(&k.KeyID, &k.PublicKey, &k.ValidUntil, &expired); err != nil {
			return nil, fmt.Errorf("postgres: keys of %s: %w", serverName, err)
		}
		k.ValidUntil = k.ValidUntil.UTC()
		if expired != nil {
			k.ExpiredAt = expired.UTC()
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: keys of %s: %w", serverName, err)
	}
	return out, nil
}

func (s *Store) ServerKeyResponse(ctx context.Context, serverName string) ([]byte, time.Time, error) {
	var (
		resp  []byte
		valid time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT response, valid_until_ts FROM server_key_responses WHERE server_name = $1`,
		serverName).Scan(&resp, &valid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, time.Time{}, fmt.Errorf("postgres: key response of %s: %w", serverName, store.ErrNotFound)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("postgres: key response of %s: %w", serverName, err)
	}
	return resp, valid.UTC(), nil
}
