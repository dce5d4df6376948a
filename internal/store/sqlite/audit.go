package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// The audit trail. Every write runs on the single writer connection with
// BEGIN IMMEDIATE, which is the audit lock here: it serialises this
// process's writers and any other process on the same file, so reading
// the head and appending after it cannot interleave with another append.
// Audit writes take no position, so they do not need the stream mutex.

const auditCols = `seq, time, actor, action, room_id, target, event_id, event_type,
	decision, reason, request_id, instance, source, door, prev_hash, hash`

func (s *Store) AppendAudit(ctx context.Context, entries []store.AuditEntry, hash store.AuditHashFunc) ([]store.AuditEntry, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: append audit: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	out, err := appendAudit(ctx, tx, entries, hash)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: append audit: commit: %w", err)
	}
	return out, nil
}

// appendAudit links entries onto the head and inserts them inside tx,
// which must be a write transaction.
func appendAudit(ctx context.Context, tx *sql.Tx, entries []store.AuditEntry, hash store.AuditHashFunc) ([]store.AuditEntry, error) {
	chain, err := auditChain(ctx, tx)
	if err != nil {
		return nil, err
	}
	stored, err := storedStreamEvents(ctx, tx, store.AuditStreamEventIDs(entries))
	if err != nil {
		return nil, err
	}
	out, ins, err := store.LinkAudit(chain.Head, entries, stored, hash)
	if err != nil {
		return nil, fmt.Errorf("sqlite: append audit: %w", err)
	}
	if len(ins) == 0 {
		return out, nil
	}
	// One parse per batch rather than per row: the group commit above
	// hands us tens to hundreds of entries at a time.
	st, err := tx.PrepareContext(ctx, `INSERT INTO audit_log (`+auditCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: append audit: %w", err)
	}
	defer st.Close()
	for _, e := range ins {
		if _, err := st.ExecContext(ctx, e.Seq, ms(e.Time), e.Actor, e.Action, e.RoomID, e.Target, e.EventID, e.EventType,
			e.Decision, e.Reason, e.RequestID, e.Instance, e.Source, e.Door, e.PrevHash, e.Hash); err != nil {
			return nil, fmt.Errorf("sqlite: append audit seq %d: %w", e.Seq, err)
		}
	}
	last := ins[len(ins)-1]
	if _, err := tx.ExecContext(ctx, `UPDATE audit_chain SET head_seq = ?, head_hash = ? WHERE id = 1`, last.Seq, last.Hash); err != nil {
		return nil, fmt.Errorf("sqlite: append audit: move head: %w", err)
	}
	return out, nil
}

func auditChain(ctx context.Context, q queryer) (store.AuditChain, error) {
	var c store.AuditChain
	err := q.QueryRowContext(ctx, `SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM audit_chain WHERE id = 1`).
		Scan(&c.Anchor.Seq, &c.Anchor.Hash, &c.Head.Seq, &c.Head.Hash)
	if err != nil {
		return c, fmt.Errorf("sqlite: audit chain state: %w", err)
	}
	return c, nil
}

// storedStreamEvents reports which of ids are already recorded from the
// stream. Under the write lock, so nobody can add one before we insert.
func storedStreamEvents(ctx context.Context, tx *sql.Tx, ids []string) (map[string]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := jsonList(ids)
	if err != nil {
		return nil, err
	}
	// The event_id <> '' term lets SQLite use the partial unique index.
	rows, err := tx.QueryContext(ctx, `SELECT event_id FROM audit_log
		WHERE source = 'stream' AND event_id <> '' AND event_id IN (SELECT value FROM json_each(?))`, list)
	if err != nil {
		return nil, fmt.Errorf("sqlite: append audit: look up stream events: %w", err)
	}
	defer rows.Close()
	stored := make(map[string]bool)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: append audit: look up stream events: %w", err)
		}
		stored[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: append audit: look up stream events: %w", err)
	}
	return stored, nil
}

func (s *Store) ReadAudit(ctx context.Context, q store.AuditQuery, fn func(store.AuditEntry) error) (store.AuditChain, error) {
	// A read transaction on a reader connection is one WAL snapshot: the
	// chain state and every row come from the same moment, whatever the
	// writer commits meanwhile.
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return store.AuditChain{}, fmt.Errorf("sqlite: read audit: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	chain, err := auditChain(ctx, tx)
	if err != nil {
		return chain, err
	}
	// Time terms only when asked for: without them the read is a plain
	// walk of the primary key, in order, with no sort.
	where, args := []string{"seq > ?"}, []any{q.AfterSeq}
	if !q.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, ms(q.Since))
	}
	if !q.Until.IsZero() {
		where, args = append(where, "time < ?"), append(args, ms(q.Until))
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_log WHERE `+strings.Join(where, " AND ")+` ORDER BY seq`, args...)
	if err != nil {
		return chain, fmt.Errorf("sqlite: read audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e  store.AuditEntry
			at int64
		)
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.RoomID, &e.Target, &e.EventID, &e.EventType,
			&e.Decision, &e.Reason, &e.RequestID, &e.Instance, &e.Source, &e.Door, &e.PrevHash, &e.Hash); err != nil {
			return chain, fmt.Errorf("sqlite: read audit: %w", err)
		}
		e.Time = fromMS(at)
		if err := fn(e); err != nil {
			return chain, fmt.Errorf("sqlite: read audit stopped at seq %d: %w", e.Seq, err)
		}
	}
	if err := rows.Err(); err != nil {
		return chain, fmt.Errorf("sqlite: read audit: %w", err)
	}
	return chain, nil
}

func (s *Store) PurgeAudit(ctx context.Context, before time.Time, limit int, record func(store.AuditPurge) store.AuditEntry, hash store.AuditHashFunc) (store.AuditPurge, error) {
	if limit <= 0 {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: limit must be positive (got %d)", limit)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	chain, err := auditChain(ctx, tx)
	if err != nil {
		return store.AuditPurge{}, err
	}
	// The purge takes a prefix of the chain, never a hole: it stops before
	// the first entry young enough to keep. The scan walks seq (the unary
	// + keeps SQLite off the time index) and only over the next limit
	// entries, so each batch costs what it deletes, not the whole table.
	upTo := min(chain.Head.Seq, chain.Anchor.Seq+int64(limit))
	var keep int64
	err = tx.QueryRowContext(ctx, `SELECT seq FROM audit_log WHERE seq > ? AND seq <= ? AND +time >= ? ORDER BY seq LIMIT 1`,
		chain.Anchor.Seq, upTo, ms(before)).Scan(&keep)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: %w", err)
	default:
		upTo = keep - 1
	}
	if upTo <= chain.Anchor.Seq {
		return store.AuditPurge{}, nil
	}
	p := store.AuditPurge{Anchor: store.AuditLink{Seq: upTo}}
	err = tx.QueryRowContext(ctx, `SELECT hash FROM audit_log WHERE seq = ?`, upTo).Scan(&p.Anchor.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: entry %d, the new anchor, is missing: the chain is broken, verify it", upTo)
	}
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	// The anchor moves first: the delete trigger allows only rows behind it.
	if _, err := tx.ExecContext(ctx, `UPDATE audit_chain SET anchor_seq = ?, anchor_hash = ? WHERE id = 1`, p.Anchor.Seq, p.Anchor.Hash); err != nil {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: move anchor: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM audit_log WHERE seq <= ?`, upTo)
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	p.Deleted = int(n)
	out, err := appendAudit(ctx, tx, []store.AuditEntry{record(p)}, hash)
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: record: %w", err)
	}
	p.Entry = out[0]
	if err := tx.Commit(); err != nil {
		return store.AuditPurge{}, fmt.Errorf("sqlite: purge audit: commit: %w", err)
	}
	return p, nil
}
