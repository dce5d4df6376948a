package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

const selectBridge = `SELECT id, operator_id, token_hash, created_at, revoked_at FROM bridges`

func scanBridge(row pgx.Row) (*store.Bridge, error) {
	var b store.Bridge
	var revoked *time.Time
	if err := row.Scan(&b.ID, &b.OperatorID, &b.TokenHash, &b.CreatedAt, &revoked); err != nil {
		return nil, err
	}
	b.CreatedAt = b.CreatedAt.UTC()
	if revoked != nil {
		b.RevokedAt = revoked.UTC()
	}
	return &b, nil
}

func getBridge(ctx context.Context, q querier, where string, arg any) (*store.Bridge, error) {
	b, err := scanBridge(q.QueryRow(ctx, selectBridge+" WHERE "+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return b, err
}

func (s *Store) AddBridge(ctx context.Context, b store.Bridge) (*store.Bridge, error) {
	var revoked *time.Time
	if !b.RevokedAt.IsZero() {
		revoked = &b.RevokedAt
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO bridges (id, operator_id, token_hash, created_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5)`, b.ID, b.OperatorID, b.TokenHash, nowIfZero(b.CreatedAt), revoked)
	switch code, _ := pgCode(err); {
	case code == uniqueViolation:
		return nil, fmt.Errorf("postgres: add bridge %q: %w", b.ID, store.ErrExists)
	case code == foreignKeyViolation:
		return nil, fmt.Errorf("postgres: add bridge %q: operator %q: %w", b.ID, b.OperatorID, store.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("postgres: add bridge %q: %w", b.ID, err)
	}
	got, err := getBridge(ctx, s.pool, "id = $1", b.ID)
	if err != nil {
		return nil, fmt.Errorf("postgres: add bridge %q: read back: %w", b.ID, err)
	}
	return got, nil
}

func (s *Store) GetBridge(ctx context.Context, id string) (*store.Bridge, error) {
	b, err := getBridge(ctx, s.pool, "id = $1", id)
	if err != nil {
		return nil, fmt.Errorf("postgres: bridge %q: %w", id, err)
	}
	return b, nil
}

func (s *Store) BridgeByTokenHash(ctx context.Context, tokenHash []byte) (*store.Bridge, error) {
	b, err := getBridge(ctx, s.pool, "token_hash = $1", tokenHash)
	if err != nil {
		return nil, fmt.Errorf("postgres: bridge by token: %w", err)
	}
	return b, nil
}

func (s *Store) ListBridges(ctx context.Context) ([]store.Bridge, error) {
	// COLLATE "C": byte order, as the SQLite dialect sorts.
	rows, err := s.pool.Query(ctx, selectBridge+` ORDER BY id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list bridges: %w", err)
	}
	defer rows.Close()
	var out []store.Bridge
	for rows.Next() {
		b, err := scanBridge(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: list bridges: %w", err)
		}
		out = append(out, *b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list bridges: %w", err)
	}
	return out, nil
}

func (s *Store) RevokeBridge(ctx context.Context, id string) (*store.Bridge, error) {
	// COALESCE keeps the first revocation time; RETURNING reads the row
	// as this statement left it.
	b, err := scanBridge(s.pool.QueryRow(ctx, `UPDATE bridges SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2
		RETURNING id, operator_id, token_hash, created_at, revoked_at`, time.Now(), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: revoke bridge %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: revoke bridge %q: %w", id, err)
	}
	return b, nil
}

func (s *Store) UnbindBridgeUser(ctx context.Context, bridgeID, userID string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM bridge_users WHERE bridge_id = $1 AND user_id = $2`, bridgeID, userID)
	if err != nil {
		return false, fmt.Errorf("postgres: unbind %q from bridge %q: %w", userID, bridgeID, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (s *Store) BridgeUsers(ctx context.Context, bridgeID string) ([]string, error) {
	return s.bridgeStrings(ctx, "users of bridge "+bridgeID,
		`SELECT user_id FROM bridge_users WHERE bridge_id = $1 ORDER BY user_id COLLATE "C"`, bridgeID)
}

func (s *Store) UserBridges(ctx context.Context, userID string) ([]string, error) {
	return s.bridgeStrings(ctx, "bridges of "+userID,
		`SELECT bridge_id FROM bridge_users WHERE user_id = $1 ORDER BY bridge_id COLLATE "C"`, userID)
}

func (s *Store) bridgeStrings(ctx context.Context, what, query string, args ...any) ([]string, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return out, nil
}

func (s *Store) MembershipAt(ctx context.Context, roomID, userID string, pos int64) (string, error) {
	var m string
	err := s.pool.QueryRow(ctx, `SELECT membership FROM events
		WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2 AND pos <= $3
		ORDER BY pos DESC LIMIT 1`, roomID, userID, pos).Scan(&m)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("postgres: membership of %s in %s at %d: %w", userID, roomID, pos, err)
	}
	return m, nil
}
