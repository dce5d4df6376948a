package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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
	return "", "", fmt.Errorf("postgres: unknown binding kind %q", kind)
}

func (s *Store) PutBinding(ctx context.Context, b store.Binding) (bool, error) {
	table, appCol, err := bindingTable(b.Kind)
	if err != nil {
		return false, err
	}
	what := fmt.Sprintf("bind %q to %s %q", b.UserID, b.Kind, b.AppID)
	// xmax = 0 holds for a row this statement inserted, not for one it
	// updated: whether the binding is new, in the same statement.
	var created bool
	err = s.pool.QueryRow(ctx, `INSERT INTO `+table+` (`+appCol+`, user_id, proof, bound_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (`+appCol+`, user_id) DO UPDATE SET proof = excluded.proof, bound_at = excluded.bound_at
		RETURNING xmax = 0`, b.AppID, b.UserID, b.Proof, nowIfZero(b.BoundAt)).Scan(&created)
	if code, _ := pgCode(err); code == foreignKeyViolation {
		return false, fmt.Errorf("postgres: %s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return created, nil
}

func (s *Store) GetBinding(ctx context.Context, kind, appID, userID string) (*store.Binding, error) {
	table, appCol, err := bindingTable(kind)
	if err != nil {
		return nil, err
	}
	b := store.Binding{Kind: kind, AppID: appID, UserID: userID}
	err = s.pool.QueryRow(ctx, `SELECT proof, bound_at FROM `+table+` WHERE `+appCol+` = $1 AND user_id = $2`,
		appID, userID).Scan(&b.Proof, &b.BoundAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: binding of %q to %s %q: %w", userID, kind, appID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: binding of %q to %s %q: %w", userID, kind, appID, err)
	}
	b.BoundAt = b.BoundAt.UTC()
	return &b, nil
}

func (s *Store) DeleteBinding(ctx context.Context, kind, appID, userID string) (bool, error) {
	table, appCol, err := bindingTable(kind)
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM `+table+` WHERE `+appCol+` = $1 AND user_id = $2`, appID, userID)
	if err != nil {
		return false, fmt.Errorf("postgres: unbind %q from %s %q: %w", userID, kind, appID, err)
	}
	return tag.RowsAffected() == 1, nil
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
			args = append(args, f.AppID)
			where = append(where, appCol+" = $"+strconv.Itoa(len(args)))
		}
		if f.UserID != "" {
			args = append(args, f.UserID)
			where = append(where, "user_id = $"+strconv.Itoa(len(args)))
		}
		q := `SELECT ` + appCol + `, user_id, proof, bound_at FROM ` + table
		if len(where) > 0 {
			q += " WHERE " + strings.Join(where, " AND ")
		}
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("postgres: list bindings: %w", err)
		}
		got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Binding, error) {
			b := store.Binding{Kind: kind}
			err := row.Scan(&b.AppID, &b.UserID, &b.Proof, &b.BoundAt)
			b.BoundAt = b.BoundAt.UTC()
			return b, err
		})
		if err != nil {
			return nil, fmt.Errorf("postgres: list bindings: %w", err)
		}
		out = append(out, got...)
	}
	// Sorted here, bytewise, as the SQLite dialect does.
	slices.SortFunc(out, func(a, b store.Binding) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.UserID, b.UserID))
	})
	return out, nil
}

func (s *Store) PutLinkCode(ctx context.Context, c store.LinkCode, maxPerUser int) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: put link code: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	created := nowIfZero(c.CreatedAt)
	// Expired codes of anyone are garbage; clearing them here keeps the
	// table small without a sweeper.
	if _, err := tx.Exec(ctx, `DELETE FROM link_codes WHERE expires_at <= $1`, created); err != nil {
		return fmt.Errorf("postgres: put link code: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO link_codes (code_hash, user_id, door, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		c.Hash, c.UserID, c.Door, created, c.ExpiresAt); err != nil {
		if code, _ := pgCode(err); code == uniqueViolation {
			return fmt.Errorf("postgres: put link code: %w", store.ErrExists)
		}
		return fmt.Errorf("postgres: put link code: %w", err)
	}
	if maxPerUser > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM link_codes WHERE user_id = $1 AND code_hash NOT IN
			(SELECT code_hash FROM link_codes WHERE user_id = $1 ORDER BY created_at DESC, code_hash LIMIT $2)`,
			c.UserID, maxPerUser); err != nil {
			return fmt.Errorf("postgres: put link code: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: put link code: %w", err)
	}
	return nil
}

func (s *Store) TakeLinkCode(ctx context.Context, hash []byte, door string, now time.Time) (*store.LinkCode, error) {
	c := store.LinkCode{Hash: hash}
	// DELETE … RETURNING makes the code single-use even when two
	// instances receive it at once: only one deletes the row.
	err := s.pool.QueryRow(ctx, `DELETE FROM link_codes WHERE code_hash = $1 AND expires_at > $2 AND (door = '' OR door = $3)
		RETURNING user_id, door, created_at, expires_at`, hash, now, door).Scan(&c.UserID, &c.Door, &c.CreatedAt, &c.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: take link code: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: take link code: %w", err)
	}
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
	return &c, nil
}
