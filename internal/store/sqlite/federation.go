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

// Federation transactions.

func (s *Store) FederationTxn(ctx context.Context, origin, txnID string) (json.RawMessage, error) {
	var resp []byte
	err := s.rq.QueryRowContext(ctx, `SELECT response FROM federation_txns WHERE origin = ? AND txn_id = ?`, origin, txnID).Scan(&resp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: federation txn %q: %w", txnID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: federation txn %q: %w", txnID, err)
	}
	return json.RawMessage(resp), nil
}

func (s *Store) PutFederationTxn(ctx context.Context, origin, txnID string, response json.RawMessage) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO federation_txns (origin, txn_id, response, created_at) VALUES (?, ?, ?, ?)`,
		origin, txnID, []byte(response), ms(time.Now()))
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return fmt.Errorf("sqlite: federation txn %q: %w", txnID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("sqlite: federation txn %q: %w", txnID, err)
	}
	return nil
}

func (s *Store) PruneFederationTxns(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM federation_txns WHERE created_at < ?`, ms(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune federation txns: %w", err)
	}
	return res.RowsAffected()
}

func (s *Store) EventsByIDAny(ctx context.Context, ids []string) ([]store.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := jsonList(ids)
	if err != nil {
		return nil, err
	}
	return queryEvents(ctx, s.rq, "events by id", `SELECT `+eventCols+` FROM events e
		WHERE e.event_id IN (SELECT value FROM json_each(?)) ORDER BY e.pos`, list)
}

func (t *eventTx) PromoteOutlier(ctx context.Context, e store.NewEvent) error {
	if e.Flags&store.FlagOutlier != 0 {
		return fmt.Errorf("sqlite: promote %q: still an outlier", e.EventID)
	}
	res, err := t.tx.ExecContext(ctx, `UPDATE events SET flags = ?, state_before = ?, state_after = ?
		WHERE event_id = ? AND flags = ?`, e.Flags, e.StateBefore, e.StateAfter, e.EventID, store.FlagOutlier)
	if err != nil {
		return fmt.Errorf("sqlite: promote %q: %w", e.EventID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("sqlite: promote %q: %w", e.EventID, store.ErrNotFound)
	}
	if e.Flags != 0 {
		return nil
	}
	for _, prev := range e.PrevEvents {
		if _, err := t.stmt(ctx, t.s.insertEdge).ExecContext(ctx, prev, e.EventID); err != nil {
			return fmt.Errorf("sqlite: promote %q: %w", e.EventID, err)
		}
	}
	return nil
}
