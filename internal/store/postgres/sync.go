package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// writeAtNextPos runs one upsert at the next stream position. The batch is
// sent in one round trip and runs as one implicit transaction (no explicit
// BEGIN), so the advisory lock it takes first is held until that
// transaction commits. The upsert must draw its position with
// nextval('stream_pos') and return it.
func (s *Store) writeAtNextPos(ctx context.Context, what, kind, upsert string, args ...any) (int64, error) {
	release, err := s.enterStream(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	b := &pgx.Batch{}
	b.Queue(lockSQL, StreamLockID)
	var pos int64
	b.Queue(upsert, args...).QueryRow(func(row pgx.Row) error { return row.Scan(&pos) })
	// kind is one of the per-kind head columns, a constant of this file.
	b.Queue(`UPDATE stream_head SET pos = currval('stream_pos'), ` + kind + ` = currval('stream_pos') WHERE id = 1`)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return pos, nil
}

func (s *Store) PutAccountData(ctx context.Context, d store.AccountData) (int64, error) {
	return s.writeAtNextPos(ctx, "put account data "+d.Type, "account_data_pos",
		`INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, nextval('stream_pos'))
		ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos
		RETURNING pos`, d.UserID, d.RoomID, d.Type, []byte(d.Content))
}

func (s *Store) PutReceipt(ctx context.Context, r store.Receipt) (int64, error) {
	return s.writeAtNextPos(ctx, "put receipt", "receipt_pos",
		`INSERT INTO receipts (room_id, user_id, type, event_id, ts, pos) VALUES ($1, $2, $3, $4, $5, nextval('stream_pos'))
		ON CONFLICT (room_id, user_id, type) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos
		RETURNING pos`, r.RoomID, r.UserID, r.Type, r.EventID, r.TS)
}

func (s *Store) MaxPos(ctx context.Context) (int64, error) {
	var pos int64
	if err := s.pool.QueryRow(ctx, `SELECT pos FROM stream_head WHERE id = 1`).Scan(&pos); err != nil {
		return 0, fmt.Errorf("postgres: max pos: %w", err)
	}
	return pos, nil
}

// StreamHeads reads every head in one row read, so they are consistent.
func (s *Store) StreamHeads(ctx context.Context) (store.Heads, error) {
	var h store.Heads
	err := s.pool.QueryRow(ctx, `SELECT pos, member_pos, receipt_pos, account_data_pos FROM stream_head WHERE id = 1`).
		Scan(&h.Pos, &h.Membership, &h.Receipt, &h.AccountData)
	if err != nil {
		return store.Heads{}, fmt.Errorf("postgres: stream heads: %w", err)
	}
	return h, nil
}

// Account data and receipts.

const accountDataCols = `user_id, room_id, type, content, pos`

func scanAccountData(row pgx.Row) (store.AccountData, error) {
	var d store.AccountData
	var content []byte
	err := row.Scan(&d.UserID, &d.RoomID, &d.Type, &content, &d.Pos)
	d.Content = content
	return d, err
}

func (s *Store) GetAccountData(ctx context.Context, userID, roomID, typ string) (*store.AccountData, error) {
	d, err := scanAccountData(s.pool.QueryRow(ctx, `SELECT `+accountDataCols+` FROM account_data
		WHERE user_id = $1 AND room_id = $2 AND type = $3`, userID, roomID, typ))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: account data %q: %w", typ, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: account data %q: %w", typ, err)
	}
	return &d, nil
}

func (s *Store) AccountDataSince(ctx context.Context, userID string, from, to int64) ([]store.AccountData, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+accountDataCols+` FROM account_data
		WHERE user_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos`, userID, from, to)
	if err != nil {
		return nil, fmt.Errorf("postgres: account data since: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AccountData, error) { return scanAccountData(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: account data since: %w", err)
	}
	return out, nil
}

// ReceiptsSince returns the receipts of roomIDs with from < pos <= to, in
// position order.
func (s *Store) ReceiptsSince(ctx context.Context, roomIDs []string, from, to int64) ([]store.Receipt, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT room_id, user_id, type, event_id, ts, pos FROM receipts
		WHERE room_id = ANY($1) AND pos > $2 AND pos <= $3 ORDER BY pos`, roomIDs, from, to)
	if err != nil {
		return nil, fmt.Errorf("postgres: receipts since: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Receipt, error) {
		var rc store.Receipt
		err := r.Scan(&rc.RoomID, &rc.UserID, &rc.Type, &rc.EventID, &rc.TS, &rc.Pos)
		return rc, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: receipts since: %w", err)
	}
	return out, nil
}

// Filters.

// PutFilter returns the filter's row ID in decimal: unique across users,
// hence per user, and short.
func (s *Store) PutFilter(ctx context.Context, userID string, filter json.RawMessage) (string, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `INSERT INTO filters (user_id, filter) VALUES ($1, $2) RETURNING id`,
		userID, []byte(filter)).Scan(&id); err != nil {
		return "", fmt.Errorf("postgres: put filter: %w", err)
	}
	return strconv.FormatInt(id, 10), nil
}

func (s *Store) GetFilter(ctx context.Context, userID, filterID string) (json.RawMessage, error) {
	id, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("postgres: filter %q: %w", filterID, store.ErrNotFound)
	}
	var f []byte
	err = s.pool.QueryRow(ctx, `SELECT filter FROM filters WHERE id = $1 AND user_id = $2`, id, userID).Scan(&f)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: filter %q: %w", filterID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: filter %q: %w", filterID, err)
	}
	return f, nil
}
