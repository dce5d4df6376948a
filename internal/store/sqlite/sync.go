package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/eimis-hub/eimis/internal/store"
)

func (s *Store) MaxPos(ctx context.Context) (int64, error) {
	var pos int64
	if err := s.rq.QueryRowContext(ctx, `SELECT pos FROM stream_head WHERE id = 1`).Scan(&pos); err != nil {
		return 0, fmt.Errorf("sqlite: max pos: %w", err)
	}
	return pos, nil
}

// StreamHeads reads every head in one row read, so they are consistent.
func (s *Store) StreamHeads(ctx context.Context) (store.Heads, error) {
	var h store.Heads
	err := s.rq.QueryRowContext(ctx, `SELECT pos, member_pos, receipt_pos, account_data_pos FROM stream_head WHERE id = 1`).
		Scan(&h.Pos, &h.Membership, &h.Receipt, &h.AccountData)
	if err != nil {
		return store.Heads{}, fmt.Errorf("sqlite: stream heads: %w", err)
	}
	return h, nil
}

// Account data and receipts.

// writeAtNextPos runs one upsert at the next stream position under the
// global stream lock.
func (s *Store) writeAtNextPos(ctx context.Context, what, kind string, write func(tx *sql.Tx, pos int64) error) (int64, error) {
	tx, unlock, err := s.beginStream(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	head, err := streamHead(ctx, tx)
	if err != nil {
		return 0, err
	}
	pos := head + 1
	if err := write(tx, pos); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	if err := setStreamHead(ctx, tx, pos, kind, pos); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: %s: commit: %w", what, err)
	}
	return pos, nil
}

func (s *Store) PutAccountData(ctx context.Context, d store.AccountData) (int64, error) {
	return s.writeAtNextPos(ctx, "put account data "+d.Type, "account_data_pos", func(tx *sql.Tx, pos int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
			d.UserID, d.RoomID, d.Type, []byte(d.Content), pos)
		return err
	})
}

const accountDataCols = `user_id, room_id, type, content, pos`

func scanAccountData(sc interface{ Scan(...any) error }) (store.AccountData, error) {
	var d store.AccountData
	var content []byte
	err := sc.Scan(&d.UserID, &d.RoomID, &d.Type, &content, &d.Pos)
	d.Content = content
	return d, err
}

func (s *Store) GetAccountData(ctx context.Context, userID, roomID, typ string) (*store.AccountData, error) {
	d, err := scanAccountData(s.rq.QueryRowContext(ctx, `SELECT `+accountDataCols+` FROM account_data
		WHERE user_id = ? AND room_id = ? AND type = ?`, userID, roomID, typ))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: account data %q: %w", typ, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: account data %q: %w", typ, err)
	}
	return &d, nil
}

func (s *Store) AccountDataSince(ctx context.Context, userID string, from, to int64) ([]store.AccountData, error) {
	rows, err := s.rq.QueryContext(ctx, `SELECT `+accountDataCols+` FROM account_data
		WHERE user_id = ? AND pos > ? AND pos <= ? ORDER BY pos`, userID, from, to)
	if err != nil {
		return nil, fmt.Errorf("sqlite: account data since: %w", err)
	}
	defer rows.Close()
	var out []store.AccountData
	for rows.Next() {
		d, err := scanAccountData(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: account data since: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: account data since: %w", err)
	}
	return out, nil
}

func (s *Store) PutReceipt(ctx context.Context, r store.Receipt) (int64, error) {
	return s.writeAtNextPos(ctx, "put receipt", "receipt_pos", func(tx *sql.Tx, pos int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO receipts (room_id, user_id, type, event_id, ts, pos) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (room_id, user_id, type) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos`,
			r.RoomID, r.UserID, r.Type, r.EventID, r.TS, pos)
		return err
	})
}

// ReceiptsSince returns the receipts of roomIDs with from < pos <= to, in
// position order.
func (s *Store) ReceiptsSince(ctx context.Context, roomIDs []string, from, to int64) ([]store.Receipt, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	list, err := jsonList(roomIDs)
	if err != nil {
		return nil, err
	}
	rows, err := s.rq.QueryContext(ctx, `SELECT room_id, user_id, type, event_id, ts, pos FROM receipts
		WHERE room_id IN (SELECT value FROM json_each(?)) AND pos > ? AND pos <= ? ORDER BY pos`, list, from, to)
	if err != nil {
		return nil, fmt.Errorf("sqlite: receipts since: %w", err)
	}
	defer rows.Close()
	var out []store.Receipt
	for rows.Next() {
		var r store.Receipt
		if err := rows.Scan(&r.RoomID, &r.UserID, &r.Type, &r.EventID, &r.TS, &r.Pos); err != nil {
			return nil, fmt.Errorf("sqlite: receipts since: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: receipts since: %w", err)
	}
	return out, nil
}

// Filters.

// PutFilter returns the filter's row ID in decimal: unique across users,
// hence per user, and short.
func (s *Store) PutFilter(ctx context.Context, userID string, filter json.RawMessage) (string, error) {
	var id int64
	if err := s.w.QueryRowContext(ctx, `INSERT INTO filters (user_id, filter) VALUES (?, ?) RETURNING id`,
		userID, []byte(filter)).Scan(&id); err != nil {
		return "", fmt.Errorf("sqlite: put filter: %w", err)
	}
	return strconv.FormatInt(id, 10), nil
}

func (s *Store) GetFilter(ctx context.Context, userID, filterID string) (json.RawMessage, error) {
	id, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("sqlite: filter %q: %w", filterID, store.ErrNotFound)
	}
	var f []byte
	err = s.rq.QueryRowContext(ctx, `SELECT filter FROM filters WHERE id = ? AND user_id = ?`, id, userID).Scan(&f)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: filter %q: %w", filterID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: filter %q: %w", filterID, err)
	}
	return f, nil
}
