package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// AuditLockID is the pg_advisory_xact_lock key of the audit lock ("EIMISA"
// in ASCII). It is not the stream lock: audit appends must not wait for
// event writes, nor hold them up. Every transaction that reads the chain
// head to extend it, or purges, takes it first, so hub instances sharing
// the database make one linear chain.
const AuditLockID int64 = 0x45494d495341

const auditCols = `seq, time, actor, action, room_id, target, event_id, event_type,
	decision, reason, request_id, instance, source, door, prev_hash, hash`

func (s *Store) AppendAudit(ctx context.Context, entries []store.AuditEntry, hash store.AuditHashFunc) ([]store.AuditEntry, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: append audit: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	chain, stored, err := lockAuditChain(ctx, tx, store.AuditStreamEventIDs(entries))
	if err != nil {
		return nil, fmt.Errorf("postgres: append audit: %w", err)
	}
	out, err := insertAudit(ctx, tx, chain.Head, entries, stored, hash)
	if err != nil {
		return nil, fmt.Errorf("postgres: append audit: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: append audit: commit: %w", err)
	}
	return out, nil
}

// lockAuditChain takes the audit lock and, in the same round trip, reads
// the chain state and which of ids are already recorded from the stream.
// Once the lock is held nobody else can append, so both stay true until
// commit.
func lockAuditChain(ctx context.Context, tx pgx.Tx, ids []string) (store.AuditChain, map[string]bool, error) {
	var chain store.AuditChain
	stored := make(map[string]bool)
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, AuditLockID)
	b.Queue(`SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM audit_chain WHERE id = 1`).
		QueryRow(func(row pgx.Row) error {
			return row.Scan(&chain.Anchor.Seq, &chain.Anchor.Hash, &chain.Head.Seq, &chain.Head.Hash)
		})
	if len(ids) > 0 {
		// The event_id <> '' term lets the planner use the partial unique index.
		b.Queue(`SELECT event_id FROM audit_log WHERE source = 'stream' AND event_id <> '' AND event_id = ANY($1)`, ids).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var id string
					if err := rows.Scan(&id); err != nil {
						return err
					}
					stored[id] = true
				}
				return rows.Err()
			})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return chain, nil, fmt.Errorf("take audit lock: %w", err)
	}
	return chain, stored, nil
}

// insertAudit links entries onto head and writes them and the new head in
// one round trip. tx must hold the audit lock.
func insertAudit(ctx context.Context, tx pgx.Tx, head store.AuditLink, entries []store.AuditEntry, stored map[string]bool, hash store.AuditHashFunc) ([]store.AuditEntry, error) {
	out, ins, err := store.LinkAudit(head, entries, stored, hash)
	if err != nil {
		return nil, err
	}
	if len(ins) == 0 {
		return out, nil
	}
	n := len(ins)
	var (
		seq                                    = make([]int64, n)
		at                                     = make([]time.Time, n)
		actor, action, room, target, eventID   = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		eventType, decision, reason, requestID = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		instance, source, door                 = make([]string, n), make([]string, n), make([]string, n)
		prev, hashes                           = make([][]byte, n), make([][]byte, n)
	)
	for i, e := range ins {
		seq[i], at[i], actor[i], action[i], room[i], target[i], eventID[i] = e.Seq, e.Time, e.Actor, e.Action, e.RoomID, e.Target, e.EventID
		eventType[i], decision[i], reason[i], requestID[i] = e.EventType, e.Decision, e.Reason, e.RequestID
		instance[i], source[i], door[i], prev[i], hashes[i] = e.Instance, e.Source, e.Door, e.PrevHash, e.Hash
	}
	last := ins[n-1]
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO audit_log (`+auditCols+`)
		SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::bytea[], $16::bytea[])`,
		seq, at, actor, action, room, target, eventID, eventType, decision, reason, requestID, instance, source, door, prev, hashes)
	b.Queue(`UPDATE audit_chain SET head_seq = $1, head_hash = $2 WHERE id = 1`, last.Seq, last.Hash)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("insert seq %d..%d: %w", ins[0].Seq, last.Seq, err)
	}
	return out, nil
}

func (s *Store) ReadAudit(ctx context.Context, q store.AuditQuery, fn func(store.AuditEntry) error) (store.AuditChain, error) {
	// REPEATABLE READ: the chain state and every row come from one
	// snapshot, whatever other instances commit meanwhile.
	var chain store.AuditChain
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return chain, fmt.Errorf("postgres: read audit: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	if err := tx.QueryRow(ctx, `SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM audit_chain WHERE id = 1`).
		Scan(&chain.Anchor.Seq, &chain.Anchor.Hash, &chain.Head.Seq, &chain.Head.Hash); err != nil {
		return chain, fmt.Errorf("postgres: read audit: chain state: %w", err)
	}
	where, args := []string{"seq > $1"}, []any{q.AfterSeq}
	if !q.Since.IsZero() {
		args = append(args, q.Since)
		where = append(where, "time >= $"+strconv.Itoa(len(args)))
	}
	if !q.Until.IsZero() {
		args = append(args, q.Until)
		where = append(where, "time < $"+strconv.Itoa(len(args)))
	}
	// pgx reads rows as they arrive: memory stays flat however long the
	// chain is.
	rows, err := tx.Query(ctx, `SELECT `+auditCols+` FROM audit_log WHERE `+strings.Join(where, " AND ")+` ORDER BY seq`, args...)
	if err != nil {
		return chain, fmt.Errorf("postgres: read audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e store.AuditEntry
		if err := rows.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &e.RoomID, &e.Target, &e.EventID, &e.EventType,
			&e.Decision, &e.Reason, &e.RequestID, &e.Instance, &e.Source, &e.Door, &e.PrevHash, &e.Hash); err != nil {
			return chain, fmt.Errorf("postgres: read audit: %w", err)
		}
		e.Time = e.Time.UTC()
		if err := fn(e); err != nil {
			return chain, fmt.Errorf("postgres: read audit stopped at seq %d: %w", e.Seq, err)
		}
	}
	if err := rows.Err(); err != nil {
		return chain, fmt.Errorf("postgres: read audit: %w", err)
	}
	return chain, nil
}

func (s *Store) PurgeAudit(ctx context.Context, before time.Time, limit int, record func(store.AuditPurge) store.AuditEntry, hash store.AuditHashFunc) (store.AuditPurge, error) {
	if limit <= 0 {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: limit must be positive (got %d)", limit)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	chain, _, err := lockAuditChain(ctx, tx, nil)
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: %w", err)
	}
	// A prefix of the chain, never a hole: stop before the first entry
	// young enough to keep, looking only at the next limit entries.
	upTo := min(chain.Head.Seq, chain.Anchor.Seq+int64(limit))
	var keep int64
	err = tx.QueryRow(ctx, `SELECT seq FROM audit_log WHERE seq > $1 AND seq <= $2 AND time >= $3 ORDER BY seq LIMIT 1`,
		chain.Anchor.Seq, upTo, before).Scan(&keep)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: %w", err)
	default:
		upTo = keep - 1
	}
	if upTo <= chain.Anchor.Seq {
		return store.AuditPurge{}, nil
	}
	p := store.AuditPurge{Anchor: store.AuditLink{Seq: upTo}}
	err = tx.QueryRow(ctx, `SELECT hash FROM audit_log WHERE seq = $1`, upTo).Scan(&p.Anchor.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: entry %d, the new anchor, is missing: the chain is broken, verify it", upTo)
	}
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: %w", err)
	}
	// The anchor moves first: the delete trigger allows only rows behind it.
	if _, err := tx.Exec(ctx, `UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1`, p.Anchor.Seq, p.Anchor.Hash); err != nil {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: move anchor: %w", err)
	}
	tag, err := tx.Exec(ctx, `DELETE FROM audit_log WHERE seq <= $1`, upTo)
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: %w", err)
	}
	p.Deleted = int(tag.RowsAffected())
	out, err := insertAudit(ctx, tx, chain.Head, []store.AuditEntry{record(p)}, nil, hash)
	if err != nil {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: record: %w", err)
	}
	p.Entry = out[0]
	if err := tx.Commit(ctx); err != nil {
		return store.AuditPurge{}, fmt.Errorf("postgres: purge audit: commit: %w", err)
	}
	return p, nil
}
