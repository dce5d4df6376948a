package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// selectOperator reads operators with their server names gathered into an
// array, so one query (one snapshot) gives the whole record.
const selectOperator = `SELECT o.id, o.name, o.contact, o.status, o.status_reason, o.created_at, o.updated_at,
	COALESCE((SELECT array_agg(s.server_name ORDER BY s.server_name) FROM operator_servers s WHERE s.operator_id = o.id), '{}')
	FROM operators o`

func scanOperator(row pgx.Row) (*store.Operator, error) {
	var o store.Operator
	var status string
	if err := row.Scan(&o.ID, &o.Name, &o.Contact, &status, &o.StatusReason, &o.CreatedAt, &o.UpdatedAt, &o.ServerNames); err != nil {
		return nil, err
	}
	o.Status = store.OperatorStatus(status)
	// array_agg sorts by the column's collation, which may not be
	// byte order; the interface promises Go's order on both dialects.
	slices.Sort(o.ServerNames)
	return &o, nil
}

func getOperator(ctx context.Context, q querier, where string, arg any) (*store.Operator, error) {
	o, err := scanOperator(q.QueryRow(ctx, selectOperator+" WHERE "+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return o, err
}

func (s *Store) AddOperator(ctx context.Context, o store.Operator) (*store.Operator, error) {
	if o.Status == "" {
		o.Status = store.OperatorActive
	}
	if !o.Status.Valid() {
		return nil, fmt.Errorf("postgres: add operator %q: invalid status %q", o.ID, o.Status)
	}
	now := nowIfZero(o.CreatedAt)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: add operator %q: %w", o.ID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	tag, err := tx.Exec(ctx, `INSERT INTO operators (id, name, contact, status, status_reason, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING`,
		o.ID, o.Name, o.Contact, string(o.Status), o.StatusReason, now)
	if err != nil {
		return nil, fmt.Errorf("postgres: add operator %q: %w", o.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return nil, fmt.Errorf("postgres: add operator %q: %w", o.ID, store.ErrExists)
	}
	for _, sn := range o.ServerNames {
		// ON CONFLICT waits for a concurrent claim of sn to commit or roll
		// back, so the primary key, not a prior read, decides who wins.
		tag, err := tx.Exec(ctx, `INSERT INTO operator_servers (server_name, operator_id) VALUES ($1, $2)
			ON CONFLICT (server_name) DO NOTHING`, sn, o.ID)
		if err != nil {
			return nil, fmt.Errorf("postgres: add operator %q: server %q: %w", o.ID, sn, err)
		}
		if tag.RowsAffected() == 1 {
			continue
		}
		var owner string
		if err := tx.QueryRow(ctx, `SELECT operator_id FROM operator_servers WHERE server_name = $1`, sn).Scan(&owner); err != nil {
			return nil, fmt.Errorf("postgres: add operator %q: owner of server %q: %w", o.ID, sn, err)
		}
		return nil, fmt.Errorf("postgres: add operator %q: %w", o.ID, &store.ServerClaimedError{ServerName: sn, Owner: owner})
	}
	got, err := getOperator(ctx, tx, "o.id = $1", o.ID)
	if err != nil {
		return nil, fmt.Errorf("postgres: add operator %q: read back: %w", o.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: add operator %q: %w", o.ID, err)
	}
	return got, nil
}

func (s *Store) GetOperator(ctx context.Context, id string) (*store.Operator, error) {
	o, err := getOperator(ctx, s.pool, "o.id = $1", id)
	if err != nil {
		return nil, fmt.Errorf("postgres: operator %q: %w", id, err)
	}
	return o, nil
}

func (s *Store) ListOperators(ctx context.Context) ([]store.Operator, error) {
	rows, err := s.pool.Query(ctx, selectOperator+" ORDER BY o.id")
	if err != nil {
		return nil, fmt.Errorf("postgres: list operators: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Operator, error) {
		o, err := scanOperator(r)
		if err != nil {
			return store.Operator{}, err
		}
		return *o, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list operators: %w", err)
	}
	// ORDER BY uses the database collation; the interface promises Go's
	// byte order (IDs are ASCII slugs, so only the collation can differ).
	slices.SortFunc(out, func(a, b store.Operator) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *Store) SetOperatorStatus(ctx context.Context, id string, status store.OperatorStatus, reason string) (*store.Operator, store.OperatorStatus, error) {
	if !status.Valid() {
		return nil, "", fmt.Errorf("postgres: set operator %q status: invalid status %q", id, status)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: set operator %q status: %w", id, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	// FOR UPDATE holds the row until commit: two instances changing the
	// same operator take turns, and the second sees the first's status
	// (a revocation included) before deciding.
	var prev string
	err = tx.QueryRow(ctx, `SELECT status FROM operators WHERE id = $1 FOR UPDATE`, id).Scan(&prev)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", fmt.Errorf("postgres: set operator %q status: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("postgres: set operator %q status: %w", id, err)
	}
	if store.OperatorStatus(prev) == store.OperatorRevoked {
		return nil, store.OperatorRevoked, fmt.Errorf("postgres: set operator %q status: %w", id, store.ErrRevoked)
	}
	if _, err := tx.Exec(ctx, `UPDATE operators SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4`,
		string(status), reason, time.Now(), id); err != nil {
		return nil, "", fmt.Errorf("postgres: set operator %q status: %w", id, err)
	}
	got, err := getOperator(ctx, tx, "o.id = $1", id)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: set operator %q status: read back: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, "", fmt.Errorf("postgres: set operator %q status: %w", id, err)
	}
	return got, store.OperatorStatus(prev), nil
}

func (s *Store) OperatorByServerName(ctx context.Context, serverName string) (*store.Operator, error) {
	o, err := getOperator(ctx, s.pool, "o.id = (SELECT operator_id FROM operator_servers WHERE server_name = $1)", serverName)
	if err != nil {
		return nil, fmt.Errorf("postgres: operator of server %q: %w", serverName, err)
	}
	return o, nil
}
