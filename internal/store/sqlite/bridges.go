package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/eimis-hub/eimis/internal/store"
)

const selectBridge = `SELECT id, operator_id, token_hash, created_at, revoked_at FROM bridges`

func scanBridge(sc interface{ Scan(...any) error }) (*store.Bridge, error) {
	var b store.Bridge
	var created int64
	var revoked sql.NullInt64
	if err := sc.Scan(&b.ID, &b.OperatorID, &b.TokenHash, &created, &revoked); err != nil {
		return nil, err
	}
	b.CreatedAt = fromMS(created)
	if revoked.Valid {
		b.RevokedAt = fromMS(revoked.Int64)
	}
	return &b, nil
}

func getBridge(ctx context.Context, q queryer, where string, arg any) (*store.Bridge, error) {
	b, err := scanBridge(q.QueryRowContext(ctx, selectBridge+" WHERE "+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return b, err
}

func (s *Store) AddBridge(ctx context.Context, b store.Bridge) (*store.Bridge, error) {
	var revoked any
	if !b.RevokedAt.IsZero() {
		revoked = ms(b.RevokedAt)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO bridges (id, operator_id, token_hash, created_at, revoked_at)
		VALUES (?, ?, ?, ?, ?)`, b.ID, b.OperatorID, b.TokenHash, ms(nowIfZero(b.CreatedAt)), revoked)
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY), isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return nil, fmt.Errorf("sqlite: add bridge %q: %w", b.ID, store.ErrExists)
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY):
		return nil, fmt.Errorf("sqlite: add bridge %q: operator %q: %w", b.ID, b.OperatorID, store.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("sqlite: add bridge %q: %w", b.ID, err)
	}
	// Read back through the writer: a reader connection may not see the
	// insert yet.
	got, err := getBridge(ctx, s.w, "id = ?", b.ID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: add bridge %q: read back: %w", b.ID, err)
	}
	return got, nil
}

func (s *Store) GetBridge(ctx context.Context, id string) (*store.Bridge, error) {
	b, err := getBridge(ctx, s.r, "id = ?", id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: bridge %q: %w", id, err)
	}
	return b, nil
}

func (s *Store) BridgeByTokenHash(ctx context.Context, tokenHash []byte) (*store.Bridge, error) {
	b, err := getBridge(ctx, s.r, "token_hash = ?", tokenHash)
	if err != nil {
		return nil, fmt.Errorf("sqlite: bridge by token: %w", err)
	}
	return b, nil
}

func (s *Store) ListBridges(ctx context.Context) ([]store.Bridge, error) {
	rows, err := s.r.QueryContext(ctx, selectBridge+" ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("sqlite: list bridges: %w", err)
	}
	defer rows.Close()
	var out []store.Bridge
	for rows.Next() {
		b, err := scanBridge(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list bridges: %w", err)
		}
		out = append(out, *b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list bridges: %w", err)
	}
	return out, nil
}

func (s *Store) RevokeBridge(ctx context.Context, id string) (*store.Bridge, error) {
	// COALESCE keeps the first revocation time.
	res, err := s.w.ExecContext(ctx, `UPDATE bridges SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, ms(time.Now()), id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: revoke bridge %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("sqlite: revoke bridge %q: %w", id, err)
	} else if n == 0 {
		return nil, fmt.Errorf("sqlite: revoke bridge %q: %w", id, store.ErrNotFound)
	}
	b, err := getBridge(ctx, s.w, "id = ?", id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: revoke bridge %q: read back: %w", id, err)
	}
	return b, nil
}

func (s *Store) UnbindBridgeUser(ctx context.Context, bridgeID, userID string) (bool, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM bridge_users WHERE bridge_id = ? AND user_id = ?`, bridgeID, userID)
	if err != nil {
		return false, fmt.Errorf("sqlite: unbind %q from bridge %q: %w", userID, bridgeID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: unbind %q from bridge %q: %w", userID, bridgeID, err)
	}
	return n == 1, nil
}

func (s *Store) BridgeUsers(ctx context.Context, bridgeID string) ([]string, error) {
	return s.bridgeStrings(ctx, "users of bridge "+bridgeID,
		`SELECT user_id FROM bridge_users WHERE bridge_id = ? ORDER BY user_id`, bridgeID)
}

func (s *Store) UserBridges(ctx context.Context, userID string) ([]string, error) {
	return s.bridgeStrings(ctx, "bridges of "+userID,
		`SELECT bridge_id FROM bridge_users WHERE user_id = ? ORDER BY bridge_id`, userID)
}

func (s *Store) bridgeStrings(ctx context.Context, what, query string, args ...any) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return out, nil
}

func (s *Store) MembershipAt(ctx context.Context, roomID, userID string, pos int64) (string, error) {
	var m string
	err := s.r.QueryRowContext(ctx, `SELECT membership FROM events
		WHERE room_id = ? AND type = 'm.room.member' AND state_key = ? AND pos <= ?
		ORDER BY pos DESC LIMIT 1`, roomID, userID, pos).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: membership of %s in %s at %d: %w", userID, roomID, pos, err)
	}
	return m, nil
}
