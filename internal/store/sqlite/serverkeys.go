package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

func (s *Store) PutServerKeys(ctx context.Context, serverName string, keys []store.ServerKey, response []byte, validUntil time.Time) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: put keys of %s: %w", serverName, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, k := range keys {
		var expired int64
		if !k.ExpiredAt.IsZero() {
			expired = ms(k.ExpiredAt)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (server_name, key_id) DO UPDATE SET
				valid_until_ts = max(server_keys.valid_until_ts, excluded.valid_until_ts),
				expired_ts = CASE WHEN server_keys.expired_ts = 0 THEN excluded.expired_ts ELSE server_keys.expired_ts END`,
			serverName, k.KeyID, k.PublicKey, ms(k.ValidUntil), expired); err != nil {
			return fmt.Errorf("sqlite: put key %s of %s: %w", k.KeyID, serverName, err)
		}
	}
	if response != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO server_key_responses (server_name, response, valid_until_ts, fetched_at)
			VALUES (?, ?, ?, ?)
			ON CONFLICT (server_name) DO UPDATE SET response = excluded.response,
				valid_until_ts = excluded.valid_until_ts, fetched_at = excluded.fetched_at`,
			serverName, response, ms(validUntil), ms(time.Now())); err != nil {
			return fmt.Errorf("sqlite: put key response of %s: %w", serverName, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: put keys of %s: %w", serverName, err)
	}
	return nil
}

func (s *Store) ServerKeys(ctx context.Context, serverName string) ([]store.ServerKey, error) {
	rows, err := s.rq.QueryContext(ctx, `SELECT key_id, public_key, valid_until_ts, expired_ts FROM server_keys
		WHERE server_name = ? ORDER BY key_id`, serverName)
	if err != nil {
		return nil, fmt.Errorf("sqlite: keys of %s: %w", serverName, err)
	}
	defer rows.Close()
	var out []store.ServerKey
	for rows.Next() {
		k := store.ServerKey{ServerName: serverName}
		var valid, expired int64
		if err := rows.Scan(&k.KeyID, &k.PublicKey, &valid, &expired); err != nil {
			return nil, fmt.Errorf("sqlite: keys of %s: %w", serverName, err)
		}
		k.ValidUntil = fromMS(valid)
		if expired != 0 {
			k.ExpiredAt = fromMS(expired)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: keys of %s: %w", serverName, err)
	}
	return out, nil
}

func (s *Store) ServerKeyResponse(ctx context.Context, serverName string) ([]byte, time.Time, error) {
	var (
		resp  []byte
		valid int64
	)
	err := s.rq.QueryRowContext(ctx, `SELECT response, valid_until_ts FROM server_key_responses WHERE server_name = ?`,
		serverName).Scan(&resp, &valid)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, fmt.Errorf("sqlite: key response of %s: %w", serverName, store.ErrNotFound)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("sqlite: key response of %s: %w", serverName, err)
	}
	return resp, fromMS(valid), nil
}
