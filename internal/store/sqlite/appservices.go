package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/eimis-hub/eimis/internal/store"
)

func (s *Store) CreateAppservice(ctx context.Context, a store.Appservice) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO appservices
		(id, registration, as_token_hash, hs_token, responsible_idnat, start_pos, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		a.ID, string(a.Registration), a.ASTokenHash, a.HSToken, a.ResponsibleIDNat, a.StartPos, ms(nowIfZero(a.CreatedAt)))
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY), isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return fmt.Errorf("sqlite: create appservice %q: %w", a.ID, store.ErrExists)
	case err != nil:
		return fmt.Errorf("sqlite: create appservice %q: %w", a.ID, err)
	}
	return nil
}

func (s *Store) Appservices(ctx context.Context) ([]store.Appservice, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, registration, as_token_hash, hs_token, responsible_idnat, start_pos, created_at
		FROM appservices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: appservices: %w", err)
	}
	defer rows.Close()
	var out []store.Appservice
	for rows.Next() {
		var a store.Appservice
		var reg string
		var created int64
		if err := rows.Scan(&a.ID, &reg, &a.ASTokenHash, &a.HSToken, &a.ResponsibleIDNat, &a.StartPos, &created); err != nil {
			return nil, fmt.Errorf("sqlite: appservices: %w", err)
		}
		a.Registration, a.CreatedAt = json.RawMessage(reg), fromMS(created)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: appservices: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteAppservice(ctx context.Context, id string) error {
	// The delivery state goes with it (ON DELETE CASCADE).
	return s.execOne(ctx, "delete appservice "+id, `DELETE FROM appservices WHERE id = ?`, id)
}

func (s *Store) ClaimAppserviceLease(ctx context.Context, id, owner string, now time.Time, ttl time.Duration) (bool, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE appservices SET lease_owner = ?, lease_until = ?
		WHERE id = ? AND (lease_owner = ? OR lease_until < ?)`, owner, ms(now.Add(ttl)), id, owner, ms(now))
	if err != nil {
		return false, fmt.Errorf("sqlite: claim appservice lease %q: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: claim appservice lease %q: %w", id, err)
	}
	if n == 1 {
		return true, nil
	}
	var one int
	err = s.r.QueryRowContext(ctx, `SELECT 1 FROM appservices WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("sqlite: claim appservice lease %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: claim appservice lease %q: %w", id, err)
	}
	return false, nil
}

func (s *Store) ReleaseAppserviceLease(ctx context.Context, id, owner string) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE appservices SET lease_owner = '', lease_until = 0
		WHERE id = ? AND lease_owner = ?`, id, owner); err != nil {
		return fmt.Errorf("sqlite: release appservice lease %q: %w", id, err)
	}
	return nil
}

// putMember upserts a membership; the WHERE clause keeps a newer one, so
// a redelivered old member event cannot undo a later change.
const putMember = `INSERT INTO appservice_members (appservice_id, room_id, user_id, membership, pos)
	VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (appservice_id, room_id, user_id) DO UPDATE SET membership = excluded.membership, pos = excluded.pos
	WHERE excluded.pos > appservice_members.pos`

func (s *Store) PutAppserviceMember(ctx context.Context, asID string, m store.AppserviceMember) error {
	_, err := s.w.ExecContext(ctx, putMember, asID, m.RoomID, m.UserID, m.Membership, m.Pos)
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
		return fmt.Errorf("sqlite: appservice %q member: %w", asID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: appservice %q member: %w", asID, err)
	}
	return nil
}

func (s *Store) AppserviceInRoom(ctx context.Context, asID, roomID string) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM appservice_members
		WHERE appservice_id = ? AND room_id = ? AND membership IN ('join', 'invite') LIMIT 1`, asID, roomID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: appservice %q in room: %w", asID, err)
	}
	return true, nil
}

func (s *Store) EnqueueAppserviceEvent(ctx context.Context, asID, eventID string, member *store.AppserviceMember, now time.Time) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: enqueue for appservice %q: %w", asID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := tx.ExecContext(ctx, `INSERT INTO appservice_queue (appservice_id, event_id, queued_at)
		VALUES (?, ?, ?) ON CONFLICT (appservice_id, event_id) DO NOTHING`, asID, eventID, ms(now))
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
		return false, fmt.Errorf("sqlite: enqueue for appservice %q: %w", asID, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: enqueue for appservice %q: %w", asID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fmt.Errorf("sqlite: enqueue for appservice %q: %w", asID, err)
	} else if n == 0 {
		return false, nil
	}
	if member != nil {
		if _, err := tx.ExecContext(ctx, putMember, asID, member.RoomID, member.UserID, member.Membership, member.Pos); err != nil {
			return false, fmt.Errorf("sqlite: enqueue for appservice %q: member: %w", asID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: enqueue for appservice %q: %w", asID, err)
	}
	return true, nil
}

func (s *Store) WaitingAppserviceEvents(ctx context.Context, asID string, limit int) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT event_id FROM appservice_queue
		WHERE appservice_id = ? AND txn_id IS NULL ORDER BY seq LIMIT ?`, asID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: appservice %q queue: %w", asID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: appservice %q queue: %w", asID, err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: appservice %q queue: %w", asID, err)
	}
	return out, nil
}

func (s *Store) CreateAppserviceTxn(ctx context.Context, asID string, eventIDs []string, body json.RawMessage, now time.Time) (int64, error) {
	ids, err := jsonList(eventIDs)
	if err != nil {
		return 0, err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: appservice %q txn: %w", asID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var txnID int64
	err = tx.QueryRowContext(ctx, `UPDATE appservices SET last_txn = last_txn + 1 WHERE id = ? RETURNING last_txn`, asID).Scan(&txnID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlite: appservice %q txn: %w", asID, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: appservice %q txn: %w", asID, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO appservice_txns (appservice_id, txn_id, body, created_at) VALUES (?, ?, ?, ?)`,
		asID, txnID, string(body), ms(now)); err != nil {
		return 0, fmt.Errorf("sqlite: appservice %q txn: %w", asID, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE appservice_queue SET txn_id = ?
		WHERE appservice_id = ? AND event_id IN (SELECT value FROM json_each(?))`, txnID, asID, ids); err != nil {
		return 0, fmt.Errorf("sqlite: appservice %q txn: %w", asID, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: appservice %q txn: %w", asID, err)
	}
	return txnID, nil
}

func (s *Store) PendingAppserviceTxn(ctx context.Context, asID string) (*store.AppserviceTxn, error) {
	var t store.AppserviceTxn
	var body string
	err := s.r.QueryRowContext(ctx, `SELECT txn_id, body FROM appservice_txns
		WHERE appservice_id = ? ORDER BY txn_id LIMIT 1`, asID).Scan(&t.ID, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: appservice %q pending txn: %w", asID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: appservice %q pending txn: %w", asID, err)
	}
	t.Body = json.RawMessage(body)
	return &t, nil
}

func (s *Store) CompleteAppserviceTxn(ctx context.Context, asID string, txnID int64) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM appservice_txns WHERE appservice_id = ? AND txn_id = ?`, asID, txnID); err != nil {
		return fmt.Errorf("sqlite: complete appservice %q txn %d: %w", asID, txnID, err)
	}
	return nil
}

func (s *Store) PruneAppserviceQueue(ctx context.Context, asID string, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM appservice_queue
		WHERE appservice_id = ? AND txn_id IS NOT NULL AND queued_at < ?`, asID, ms(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune appservice %q queue: %w", asID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune appservice %q queue: %w", asID, err)
	}
	return int(n), nil
}
