package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

func (s *Store) CreateServiceAccount(ctx context.Context, a store.ServiceAccount) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO service_accounts (localpart, kind, name, responsible_idnat, created_at)
		VALUES ($1, $2, $3, $4, $5)`, a.Localpart, a.Kind, a.Name, a.ResponsibleIDNat, nowIfZero(a.CreatedAt))
	if code, _ := pgCode(err); code == uniqueViolation {
		return fmt.Errorf("postgres: create service account %q: %w", a.Localpart, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("postgres: create service account %q: %w", a.Localpart, err)
	}
	return nil
}

func (s *Store) ServiceAccounts(ctx context.Context) ([]store.ServiceAccount, error) {
	rows, err := s.pool.Query(ctx, `SELECT localpart, kind, name, responsible_idnat, created_at
		FROM service_accounts ORDER BY localpart`)
	if err != nil {
		return nil, fmt.Errorf("postgres: service accounts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ServiceAccount, error) {
		var a store.ServiceAccount
		err := r.Scan(&a.Localpart, &a.Kind, &a.Name, &a.ResponsibleIDNat, &a.CreatedAt)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: service accounts: %w", err)
	}
	return out, nil
}

func (s *Store) Accounts(ctx context.Context, fn func(store.Account) error) error {
	rows, err := s.pool.Query(ctx, `SELECT localpart, admin, display_name, avatar_url, created_at
		FROM accounts ORDER BY localpart`)
	if err != nil {
		return fmt.Errorf("postgres: accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a store.Account
		if err := rows.Scan(&a.Localpart, &a.Admin, &a.DisplayName, &a.AvatarURL, &a.CreatedAt); err != nil {
			return fmt.Errorf("postgres: accounts: %w", err)
		}
		if err := fn(a); err != nil {
			return fmt.Errorf("postgres: accounts: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: accounts: %w", err)
	}
	return nil
}

func (s *Store) AccountsExist(ctx context.Context, localparts []string) (map[string]bool, error) {
	out := make(map[string]bool, len(localparts))
	rows, err := s.pool.Query(ctx, `SELECT localpart FROM accounts WHERE localpart = ANY($1)`, localparts)
	if err != nil {
		return nil, fmt.Errorf("postgres: accounts exist: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: accounts exist: %w", err)
	}
	for _, lp := range found {
		out[lp] = true
	}
	return out, nil
}

func (s *Store) PutLoginToken(ctx context.Context, tokenHash []byte, localpart string, expires time.Time) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO login_tokens (token_hash, localpart, expires_at) VALUES ($1, $2, $3)`,
		tokenHash, localpart, expires); err != nil {
		return fmt.Errorf("postgres: put login token: %w", err)
	}
	return nil
}

func (s *Store) TakeLoginToken(ctx context.Context, tokenHash []byte, now time.Time) (string, error) {
	// Expired tokens of anyone are garbage; clearing them here keeps the
	// table small without a sweeper.
	if _, err := s.pool.Exec(ctx, `DELETE FROM login_tokens WHERE expires_at <= $1`, now); err != nil {
		return "", fmt.Errorf("postgres: take login token: %w", err)
	}
	var lp string
	// DELETE … RETURNING makes the token single-use even when two
	// instances receive the same token at once: only one deletes the row.
	err := s.pool.QueryRow(ctx, `DELETE FROM login_tokens WHERE token_hash = $1 AND expires_at > $2 RETURNING localpart`,
		tokenHash, now).Scan(&lp)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: take login token: %w", store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: take login token: %w", err)
	}
	return lp, nil
}

func (s *Store) DirectoryRevision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.pool.QueryRow(ctx, `SELECT revision FROM directory_meta WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("postgres: directory revision: %w", err)
	}
	return rev, nil
}

func (s *Store) UpsertDirectory(ctx context.Context, recs []store.DirectoryRecord) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: directory upsert: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	// FOR UPDATE serialises with an import's commit, which switches the
	// current generation under the same row lock.
	var cur int64
	if err := tx.QueryRow(ctx, `SELECT current_generation FROM directory_meta WHERE id = 1 FOR UPDATE`).Scan(&cur); err != nil {
		return 0, fmt.Errorf("postgres: directory upsert: %w", err)
	}
	if cur == 0 {
		return 0, fmt.Errorf("postgres: directory upsert: no directory imported yet: %w", store.ErrNotFound)
	}
	now := time.Now()
	inactivated := 0
	for _, r := range recs {
		var was *bool
		err := tx.QueryRow(ctx, `SELECT active FROM directory_practitioners WHERE generation = $1 AND idnat = $2`,
			cur, r.IDNat).Scan(&was)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("postgres: directory upsert %s: %w", r.IDNat, err)
		}
		if was != nil && *was && !r.Active {
			inactivated++
		}
		if _, err := tx.Exec(ctx, `INSERT INTO directory_practitioners
			(generation, idnat, rpps, civility, last_name, first_name, professions, activities, active, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (generation, idnat) DO UPDATE SET rpps = excluded.rpps, civility = excluded.civility,
				last_name = excluded.last_name, first_name = excluded.first_name, professions = excluded.professions,
				activities = excluded.activities, active = excluded.active, updated_at = excluded.updated_at`,
			cur, r.IDNat, r.RPPS, r.Civility, r.LastName, r.FirstName, jsonText(r.Professions), jsonText(r.Activities), r.Active, now); err != nil {
			return 0, fmt.Errorf("postgres: directory upsert %s: %w", r.IDNat, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE directory_meta SET revision = revision + 1 WHERE id = 1`); err != nil {
		return 0, fmt.Errorf("postgres: directory upsert: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("postgres: directory upsert: %w", err)
	}
	return inactivated, nil
}
