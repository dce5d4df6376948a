package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/eimis-hub/eimis/internal/store"
)

// bindingTable names where each kind of binding lives: a bridge's in
// bridge_users (which predates consent), an appservice's in
// appservice_bindings.
func bindingTable(kind string) (table, appCol string, err error) {
	switch kind {
	case store.BindingBridge:
		return "bridge_users", "bridge_id", nil
	case store.BindingAppservice:
		return "appservice_bindings", "appservice_id", nil
	}
	return "", "", fmt.Errorf("sqlite: unknown binding kind %q", kind)
}

func (s *Store) PutBinding(ctx context.Context, b store.Binding) (bool, error) {
	table, appCol, err := bindingTable(b.Kind)
	if err != nil {
		return false, err
	}
	what := fmt.Sprintf("bind %q to %s %q", b.UserID, b.Kind, b.AppID)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	at := ms(nowIfZero(b.BoundAt))
	res, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (`+appCol+`, user_id, proof, bound_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (`+appCol+`, user_id) DO NOTHING`, b.AppID, b.UserID, b.Proof, at)
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
		return false, fmt.Errorf("sqlite: %s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	if n == 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET proof = ?, bound_at = ? WHERE `+appCol+` = ? AND user_id = ?`,
			b.Proof, at, b.AppID, b.UserID); err != nil {
			return false, fmt.Errorf("sqlite: %s: %w", what, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return n == 1, nil
}

func (s *Store) GetBinding(ctx context.Context, kind, appID, userID string) (*store.Binding, error) {
	table, appCol, err := bindingTable(kind)
	if err != nil {
		return nil, err
	}
	b := store.Binding{Kind: kind, AppID: appID, UserID: userID}
	var at int64
	err = s.r.QueryRowContext(ctx, `SELECT proof, bound_at FROM `+table+` WHERE `+appCol+` = ? AND user_id = ?`,
		appID, userID).Scan(&b.Proof, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: binding of %q to %s %q: %w", userID, kind, appID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: binding of %q to %s %q: %w", userID, kind, appID, err)
	}
	b.BoundAt = fromMS(at)
	return &b, nil
}

func (s *Store) DeleteBinding(ctx context.Context, kind, appID, userID string) (bool, error) {
	table, appCol, err := bindingTable(kind)
	if err != nil {
		return false, err
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM `+table+` WHERE `+appCol+` = ? AND user_id = ?`, appID, userID)
	if err != nil {
		return false, fmt.Errorf("sqlite: unbind %q from %s %q: %w", userID, kind, appID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: unbind %q from %s %q: %w", userID, kind, appID, err)
	}
	return n == 1, nil
}

func (s *Store) Bindings(ctx context.Context, f store.BindingFilter) ([]store.Binding, error) {
	kinds := []string{store.BindingBridge, store.BindingAppservice}
	if f.Kind != "" {
		kinds = []string{f.Kind}
	}
	var out []store.Binding
	for _, kind := range kinds {
		table, appCol, err := bindingTable(kind)
		if err != nil {
			return nil, err
		}
		var where []string
		var args []any
		if f.AppID != "" {
			where, args = append(where, appCol+" = ?"), append(args, f.AppID)
		}
		if f.UserID != "" {
			where, args = append(where, "user_id = ?"), append(args, f.UserID)
		}
		q := `SELECT ` + appCol + `, user_id, proof, bound_at FROM ` + table
		if len(where) > 0 {
			q += " WHERE " + strings.Join(where, " AND ")
		}
		if err := s.scanBindings(ctx, kind, q, args, &out); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b store.Binding) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.UserID, b.UserID))
	})
	return out, nil
}

func (s *Store) scanBindings(ctx context.Context, kind, q string, args []any, out *[]store.Binding) error {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlite: list bindings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		b := store.Binding{Kind: kind}
		var at int64
		if err := rows.Scan(&b.AppID, &b.UserID, &b.Proof, &at); err != nil {
			return fmt.Errorf("sqlite: list bindings: %w", err)
		}
		b.BoundAt = fromMS(at)
		*out = append(*out, b)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: list bindings: %w", err)
	}
	return nil
}

func (s *Store) PutLinkCode(ctx context.Context, c store.LinkCode, maxPerUser int) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: put link code: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	created := nowIfZero(c.CreatedAt)
	// Expired codes of anyone are garbage; clearing them here keeps the
	// table small without a sweeper.
	if _, err := tx.ExecContext(ctx, `DELETE FROM link_codes WHERE expires_at <= ?`, ms(created)); err != nil {
		return fmt.Errorf("sqlite: put link code: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO link_codes (code_hash, user_id, door, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		c.Hash, c.UserID, c.Door, ms(created), ms(c.ExpiresAt)); err != nil {
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
			return fmt.Errorf("sqlite: put link code: %w", store.ErrExists)
		}
		return fmt.Errorf("sqlite: put link code: %w", err)
	}
	if maxPerUser > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM link_codes WHERE user_id = ? AND code_hash NOT IN
			(SELECT code_hash FROM link_codes WHERE user_id = ? ORDER BY created_at DESC, code_hash LIMIT ?)`,
			c.UserID, c.UserID, maxPerUser); err != nil {
			return fmt.Errorf("sqlite: put link code: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: put link code: %w", err)
	}
	return nil
}

func (s *Store) TakeLinkCode(ctx context.Context, hash []byte, door string, now time.Time) (*store.LinkCode, error) {
	c := store.LinkCode{Hash: hash}
	var created, expires int64
	// One statement: of two binds racing with one code, one deletes the
	// row and the other finds nothing.
	err := s.w.QueryRowContext(ctx, `DELETE FROM link_codes WHERE code_hash = ? AND expires_at > ? AND (door = '' OR door = ?)
		RETURNING user_id, door, created_at, expires_at`, hash, ms(now), door).Scan(&c.UserID, &c.Door, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: take link code: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: take link code: %w", err)
	}
	c.CreatedAt, c.ExpiresAt = fromMS(created), fromMS(expires)
	return &c, nil
}
