package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// selectOperator reads operators with their server names gathered into a
// JSON array, so one query (one snapshot) gives the whole record.
const selectOperator = `SELECT o.id, o.name, o.contact, o.status, o.status_reason, o.created_at, o.updated_at,
	(SELECT json_group_array(s.server_name) FROM operator_servers s WHERE s.operator_id = o.id)
	FROM operators o`

func scanOperator(sc interface{ Scan(...any) error }) (*store.Operator, error) {
	var o store.Operator
	var created, updated int64
	var servers string
	if err := sc.Scan(&o.ID, &o.Name, &o.Contact, &o.Status, &o.StatusReason, &created, &updated, &servers); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(servers), &o.ServerNames); err != nil {
		return nil, fmt.Errorf("decode server names: %w", err)
	}
	// json_group_array does not promise an order.
	slices.Sort(o.ServerNames)
	o.CreatedAt, o.UpdatedAt = fromMS(created), fromMS(updated)
	return &o, nil
}

func getOperator(ctx context.Context, q queryer, where string, arg any) (*store.Operator, error) {
	o, err := scanOperator(q.QueryRowContext(ctx, selectOperator+" WHERE "+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return o, err
}

func (s *Store) AddOperator(ctx context.Context, o store.Operator) (*store.Operator, error) {
	if o.Status == "" {
		o.Status = store.OperatorActive
	}
	if !o.Status.Valid() {
		return nil, fmt.Errorf("sqlite: add operator %q: invalid status %q", o.ID, o.Status)
	}
	now := ms(nowIfZero(o.CreatedAt))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: add operator %q: %w", o.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := tx.ExecContext(ctx, `INSERT INTO operators (id, name, contact, status, status_reason, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		o.ID, o.Name, o.Contact, o.Status, o.StatusReason, now, now)
	if err != nil {
		return nil, fmt.Errorf("sqlite: add operator %q: %w", o.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("sqlite: add operator %q: %w", o.ID, err)
	} else if n == 0 {
		return nil, fmt.Errorf("sqlite: add operator %q: %w", o.ID, store.ErrExists)
	}
	for _, sn := range o.ServerNames {
		// The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so
		// nobody can claim sn between this read and the insert.
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT operator_id FROM operator_servers WHERE server_name = ?`, sn).Scan(&owner)
		if err == nil {
			return nil, fmt.Errorf("sqlite: add operator %q: %w", o.ID, &store.ServerClaimedError{ServerName: sn, Owner: owner})
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("sqlite: add operator %q: %w", o.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO operator_servers (server_name, operator_id) VALUES (?, ?)`, sn, o.ID); err != nil {
			return nil, fmt.Errorf("sqlite: add operator %q: server %q: %w", o.ID, sn, err)
		}
	}
	got, err := getOperator(ctx, tx, "o.id = ?", o.ID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: add operator %q: read back: %w", o.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: add operator %q: %w", o.ID, err)
	}
	return got, nil
}

func (s *Store) GetOperator(ctx context.Context, id string) (*store.Operator, error) {
	o, err := getOperator(ctx, s.r, "o.id = ?", id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: operator %q: %w", id, err)
	}
	return o, nil
}

func (s *Store) ListOperators(ctx context.Context) ([]store.Operator, error) {
	rows, err := s.r.QueryContext(ctx, selectOperator+" ORDER BY o.id")
	if err != nil {
		return nil, fmt.Errorf("sqlite: list operators: %w", err)
	}
	defer rows.Close()
	var out []store.Operator
	for rows.Next() {
		o, err := scanOperator(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list operators: %w", err)
		}
		out = append(out, *o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list operators: %w", err)
	}
	return out, nil
}

func (s *Store) SetOperatorStatus(ctx context.Context, id string, status store.OperatorStatus, reason string) (*store.Operator, store.OperatorStatus, error) {
	if !status.Valid() {
		return nil, "", fmt.Errorf("sqlite: set operator %q status: invalid status %q", id, status)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: set operator %q status: %w", id, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// BEGIN IMMEDIATE already holds the write lock: the status read here
	// is still the status when the update commits.
	var prev store.OperatorStatus
	err = tx.QueryRowContext(ctx, `SELECT status FROM operators WHERE id = ?`, id).Scan(&prev)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", fmt.Errorf("sqlite: set operator %q status: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: set operator %q status: %w", id, err)
	}
	if prev == store.OperatorRevoked {
		return nil, prev, fmt.Errorf("sqlite: set operator %q status: %w", id, store.ErrRevoked)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE operators SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?`,
		status, reason, ms(time.Now()), id); err != nil {
		return nil, "", fmt.Errorf("sqlite: set operator %q status: %w", id, err)
	}
	got, err := getOperator(ctx, tx, "o.id = ?", id)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: set operator %q status: read back: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, "", fmt.Errorf("sqlite: set operator %q status: %w", id, err)
	}
	return got, prev, nil
}

func (s *Store) OperatorByServerName(ctx context.Context, serverName string) (*store.Operator, error) {
	o, err := getOperator(ctx, s.r, "o.id = (SELECT operator_id FROM operator_servers WHERE server_name = ?)", serverName)
	if err != nil {
		return nil, fmt.Errorf("sqlite: operator of server %q: %w", serverName, err)
	}
	return o, nil
}
