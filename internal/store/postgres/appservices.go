package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

func (s *Store) CreateAppservice(ctx context.Context, a store.Appservice) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO appservices
		(id, registration, as_token_hash, hs_token, responsible_idnat, start_pos, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		a.ID, string(a.Registration), a.ASTokenHash, a.HSToken, a.ResponsibleIDNat, a.StartPos, nowIfZero(a.CreatedAt))
	if code, _ := pgCode(err); code == uniqueViolation {
		return fmt.Errorf("postgres: create appservice %q: %w", a.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("postgres: create appservice %q: %w", a.ID, err)
	}
	return nil
}

func (s *Store) Appservices(ctx context.Context) ([]store.Appservice, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, registration, as_token_hash, hs_token, responsible_idnat, start_pos, created_at
		FROM appservices ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: appservices: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Appservice, error) {
		var a store.Appservice
		var reg string
		err := r.Scan(&a.ID, &reg, &a.ASTokenHash, &a.HSToken, &a.ResponsibleIDNat, &a.StartPos, &a.CreatedAt)
		a.Registration = json.RawMessage(reg)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: appservices: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteAppservice(ctx context.Context, id string) error {
	// The delivery state goes with it (ON DELETE CASCADE).
	return s.execOne(ctx, "delete appservice "+id, `DELETE FROM appservices WHERE id = $1`, id)
}

func (s *Store) ClaimAppserviceLease(ctx context.Context, id, owner string, now time.Time, ttl time.Duration) (bool, error) {
	// One statement: the row lock taken by the UPDATE makes two instances
	// claiming at once see each other's result.
	var held bool
	err := s.pool.QueryRow(ctx, `WITH claimed AS (
			UPDATE appservices SET lease_owner = $2, lease_until = $3
			WHERE id = $1 AND (lease_owner = $2 OR lease_until < $4) RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM claimed) FROM appservices WHERE id = $1`,
		id, owner, now.Add(ttl), now).Scan(&held)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("postgres: claim appservice lease %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("postgres: claim appservice lease %q: %w", id, err)
	}
	return held, nil
}

func (s *Store) ReleaseAppserviceLease(ctx context.Context, id, owner string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE appservices SET lease_owner = '', lease_until = 'epoch'
		WHERE id = $1 AND lease_owner = $2`, id, owner); err != nil {
		return fmt.Errorf("postgres: release appservice lease %q: %w", id, err)
	}
	return nil
}

// putMember upserts a membership; the WHERE clause keeps a newer one, so
// a redelivered old member event cannot undo a later change.
const putMember = `INSERT INTO appservice_members (appservice_id, room_id, user_id, membership, pos)
	VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (appservice_id, room_id, user_id) DO UPDATE SET membership = excluded.membership, pos = excluded.pos
	WHERE excluded.pos > appservice_members.pos`

func (s *Store) PutAppserviceMember(ctx context.Context, asID string, m store.AppserviceMember) error {
	_, err := s.pool.Exec(ctx, putMember, asID, m.RoomID, m.UserID, m.Membership, m.Pos)
	if code, _ := pgCode(err); code == foreignKeyViolation {
		return fmt.Errorf("postgres: appservice %q member: %w", asID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("postgres: appservice %q member: %w", asID, err)
	}
	return nil
}

func (s *Store) AppserviceInRoom(ctx context.Context, asID, roomID string) (bool, error) {
	var in bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM appservice_members
		WHERE appservice_id = $1 AND room_id = $2 AND membership IN ('join', 'invite'))`, asID, roomID).Scan(&in)
	if err != nil {
		return false, fmt.Errorf("postgres: appservice %q in room: %w", asID, err)
	}
	return in, nil
}

func (s *Store) EnqueueAppserviceEvent(ctx context.Context, asID, eventID string, member *store.AppserviceMember, now time.Time) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: enqueue for appservice %q: %w", asID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	tag, err := tx.Exec(ctx, `INSERT INTO appservice_queue (appservice_id, event_id, queued_at)
		VALUES ($1, $2, $3) ON CONFLICT (appservice_id, event_id) DO NOTHING`, asID, eventID, now)
	if code, _ := pgCode(err); code == foreignKeyViolation {
		return false, fmt.Errorf("postgres: enqueue for appservice %q: %w", asID, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("postgres: enqueue for appservice %q: %w", asID, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	if member != nil {
		if _, err := tx.Exec(ctx, putMember, asID, member.RoomID, member.UserID, member.Membership, member.Pos); err != nil {
			return false, fmt.Errorf("postgres: enqueue for appservice %q: member: %w", asID, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("postgres: enqueue for appservice %q: %w", asID, err)
	}
	return true, nil
}

func (s *Store) WaitingAppserviceEvents(ctx context.Context, asID string, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT event_id FROM appservice_queue
		WHERE appservice_id = $1 AND txn_id IS NULL ORDER BY seq LIMIT $2`, asID, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: appservice %q queue: %w", asID, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: appservice %q queue: %w", asID, err)
	}
	return out, nil
}

func (s *Store) CreateAppserviceTxn(ctx context.Context, asID string, eventIDs []string, body json.RawMessage, now time.Time) (int64, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: appservice %q txn: %w", asID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var txnID int64
	err = tx.QueryRow(ctx, `UPDATE appservices SET last_txn = last_txn + 1 WHERE id = $1 RETURNING last_txn`, asID).Scan(&txnID)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("postgres: appservice %q txn: %w", asID, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: appservice %q txn: %w", asID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO appservice_txns (appservice_id, txn_id, body, created_at) VALUES ($1, $2, $3, $4)`,
		asID, txnID, string(body), now); err != nil {
		return 0, fmt.Errorf("postgres: appservice %q txn: %w", asID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE appservice_queue SET txn_id = $1 WHERE appservice_id = $2 AND event_id = ANY($3)`,
		txnID, asID, eventIDs); err != nil {
		return 0, fmt.Errorf("postgres: appservice %q txn: %w", asID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("postgres: appservice %q txn: %w", asID, err)
	}
	return txnID, nil
}

func (s *Store) PendingAppserviceTxn(ctx context.Context, asID string) (*store.AppserviceTxn, error) {
	var t store.AppserviceTxn
	var body string
	err := s.pool.QueryRow(ctx, `SELECT txn_id, body FROM appservice_txns
		WHERE appservice_id = $1 ORDER BY txn_id LIMIT 1`, asID).Scan(&t.ID, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: appservice %q pending txn: %w", asID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: appservice %q pending txn: %w", asID, err)
	}
	t.Body = json.RawMessage(body)
	return &t, nil
}

func (s *Store) CompleteAppserviceTxn(ctx context.Context, asID string, txnID int64) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM appservice_txns WHERE appservice_id = $1 AND txn_id = $2`, asID, txnID); err != nil {
		return fmt.Errorf("postgres: complete appservice %q txn %d: %w", asID, txnID, err)
	}
	return nil
}

func (s *Store) PruneAppserviceQueue(ctx context.Context, asID string, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM appservice_queue
		WHERE appservice_id = $1 AND txn_id IS NOT NULL AND queued_at < $2`, asID, before)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune appservice %q queue: %w", asID, err)
	}
	return int(tag.RowsAffected()), nil
}
