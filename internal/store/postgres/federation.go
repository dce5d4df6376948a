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

// Federation transactions.

func (s *Store) FederationTxn(ctx context.Context, origin, txnID string) (json.RawMessage, error) {
	var resp []byte
	err := s.pool.QueryRow(ctx, `SELECT response FROM federation_txns WHERE origin = $1 AND txn_id = $2`, origin, txnID).Scan(&resp)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: federation txn %q: %w", txnID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: federation txn %q: %w", txnID, err)
	}
	return json.RawMessage(resp), nil
}

func (s *Store) PutFederationTxn(ctx context.Context, origin, txnID string, response json.RawMessage) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO federation_txns (origin, txn_id, response) VALUES ($1, $2, $3)`,
		origin, txnID, []byte(response))
	if code, _ := pgCode(err); code == uniqueViolation {
		return fmt.Errorf("postgres: federation txn %q: %w", txnID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("postgres: federation txn %q: %w", txnID, err)
	}
	return nil
}

func (s *Store) PruneFederationTxns(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM federation_txns WHERE created_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune federation txns: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (s *Store) EventsByIDAny(ctx context.Context, ids []string) ([]store.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	return queryEvents(ctx, s.pool, "events by id",
		`SELECT `+eventCols+` FROM events e WHERE e.event_id = ANY($1) ORDER BY e.pos`, ids)
}

func (t *eventTx) PromoteOutlier(ctx context.Context, e store.NewEvent) error {
	if e.Flags&store.FlagOutlier != 0 {
		return fmt.Errorf("postgres: promote %q: still an outlier", e.EventID)
	}
	if err := t.flush(ctx, false); err != nil {
		return err
	}
	tag, err := t.tx.Exec(ctx, `UPDATE events SET flags = $1, state_before = $2, state_after = $3
		WHERE event_id = $4 AND flags = $5`, int(e.Flags), e.StateBefore, e.StateAfter, e.EventID, int(store.FlagOutlier))
	if err != nil {
		return fmt.Errorf("postgres: promote %q: %w", e.EventID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: promote %q: %w", e.EventID, store.ErrNotFound)
	}
	if e.Flags != 0 || len(e.PrevEvents) == 0 {
		return nil
	}
	evs := make([]string, len(e.PrevEvents))
	for i := range evs {
		evs[i] = e.EventID
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO event_edges (prev_event_id, event_id)
		SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`, e.PrevEvents, evs); err != nil {
		return fmt.Errorf("postgres: promote %q: %w", e.EventID, err)
	}
	return nil
}
