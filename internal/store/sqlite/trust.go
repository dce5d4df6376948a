package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/eimis-hub/eimis/internal/store"
)

func (s *Store) CreateServiceAccount(ctx context.Context, a store.ServiceAccount) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO service_accounts (localpart, kind, name, responsible_idnat, created_at)
		VALUES (?, ?, ?, ?, ?)`, a.Localpart, a.Kind, a.Name, a.ResponsibleIDNat, ms(nowIfZero(a.CreatedAt)))
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return fmt.Errorf("sqlite: create service account %q: %w", a.Localpart, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create service account %q: %w", a.Localpart, err)
	}
	return nil
}

func (s *Store) ServiceAccounts(ctx context.Context) ([]store.ServiceAccount, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT localpart, kind, name, responsible_idnat, created_at
		FROM service_accounts ORDER BY localpart`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: service accounts: %w", err)
	}
	defer rows.Close()
	var out []store.ServiceAccount
	for rows.Next() {
		var a store.ServiceAccount
		var created int64
		if err := rows.Scan(&a.Localpart, &a.Kind, &a.Name, &a.ResponsibleIDNat, &created); err != nil {
			return nil, fmt.Errorf("sqlite: service accounts: %w", err)
		}
		a.CreatedAt = fromMS(created)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: service accounts: %w", err)
	}
	return out, nil
}

func (s *Store) Accounts(ctx context.Context, fn func(store.Account) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT localpart, admin, display_name, avatar_url, created_at
		FROM accounts ORDER BY localpart`)
	if err != nil {
		return fmt.Errorf("sqlite: accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a store.Account
		var created int64
		if err := rows.Scan(&a.Localpart, &a.Admin, &a.DisplayName, &a.AvatarURL, &created); err != nil {
			return fmt.Errorf("sqlite: accounts: %w", err)
		}
		a.CreatedAt = fromMS(created)
		if err := fn(a); err != nil {
			return fmt.Errorf("sqlite: accounts: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: accounts: %w", err)
	}
	return nil
}

func (s *Store) AccountsExist(ctx context.Context, localparts []string) (map[string]bool, error) {
	out := make(map[string]bool, len(localparts))
	// SQLite's default limit on host parameters is far above what a search
	// page asks for, but chunk anyway so a large caller cannot hit it.
	const chunk = 500
	for len(localparts) > 0 {
		n := min(chunk, len(localparts))
		part := localparts[:n]
		localparts = localparts[n:]
		args := make([]any, len(part))
		for i, lp := range part {
			args[i] = lp
		}
		q := `SELECT localpart FROM accounts WHERE localpart IN (?` + strings.Repeat(",?", len(part)-1) + `)`
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: accounts exist: %w", err)
		}
		for rows.Next() {
			var lp string
			if err := rows.Scan(&lp); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: accounts exist: %w", err)
			}
			out[lp] = true
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: accounts exist: %w", err)
		}
	}
	return out, nil
}

func (s *Store) PutLoginToken(ctx context.Context, tokenHash []byte, localpart string, expires time.Time) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO login_tokens (token_hash, localpart, expires_at) VALUES (?, ?, ?)`,
		tokenHash, localpart, ms(expires)); err != nil {
		return fmt.Errorf("sqlite: put login token: %w", err)
	}
	return nil
}

func (s *Store) TakeLoginToken(ctx context.Context, tokenHash []byte, now time.Time) (string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("sqlite: take login token: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// Expired tokens of anyone are garbage; clearing them here keeps the
	// table small without a sweeper.
	if _, err := tx.ExecContext(ctx, `DELETE FROM login_tokens WHERE expires_at <= ?`, ms(now)); err != nil {
		return "", fmt.Errorf("sqlite: take login token: %w", err)
	}
	var lp string
	err = tx.QueryRowContext(ctx, `DELETE FROM login_tokens WHERE token_hash = ? RETURNING localpart`, tokenHash).Scan(&lp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: take login token: %w", store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: take login token: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("sqlite: take login token: %w", err)
	}
	return lp, nil
}

func (s *Store) DirectoryRevision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.r.QueryRowContext(ctx, `SELECT revision FROM directory_meta WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("sqlite: directory revision: %w", err)
	}
	return rev, nil
}

func (s *Store) UpsertDirectory(ctx context.Context, recs []store.DirectoryRecord) (int, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: directory upsert: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var cur int64
	if err := tx.QueryRowContext(ctx, `SELECT current_generation FROM directory_meta WHERE id = 1`).Scan(&cur); err != nil {
		return 0, fmt.Errorf("sqlite: directory upsert: %w", err)
	}
	if cur == 0 {
		return 0, fmt.Errorf("sqlite: directory upsert: no directory imported yet: %w", store.ErrNotFound)
	}
	now := ms(time.Now())
	inactivated := 0
	for _, r := range recs {
		var was sql.NullBool
		err := tx.QueryRowContext(ctx, `SELECT active FROM directory_practitioners WHERE generation = ? AND idnat = ?`,
			cur, r.IDNat).Scan(&was)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("sqlite: directory upsert %s: %w", r.IDNat, err)
		}
		if was.Valid && was.Bool && !r.Active {
			inactivated++
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO directory_practitioners
			(generation, idnat, rpps, civility, last_name, first_name, professions, activities, active, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (generation, idnat) DO UPDATE SET rpps = excluded.rpps, civility = excluded.civility,
				last_name = excluded.last_name, first_name = excluded.first_name, professions = excluded.professions,
				activities = excluded.activities, active = excluded.active, updated_at = excluded.updated_at`,
			cur, r.IDNat, r.RPPS, r.Civility, r.LastName, r.FirstName, jsonText(r.Professions), jsonText(r.Activities), r.Active, now); err != nil {
			return 0, fmt.Errorf("sqlite: directory upsert %s: %w", r.IDNat, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE directory_meta SET revision = revision + 1 WHERE id = 1`); err != nil {
		return 0, fmt.Errorf("sqlite: directory upsert: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: directory upsert: %w", err)
	}
	return inactivated, nil
}
