// Package sqlite is the embedded store dialect, on the pure-Go
// modernc.org/sqlite driver.
//
// SQLite allows one writer at a time per file. Rather than let writers
// collide and retry on SQLITE_BUSY, the Store funnels every write through a
// single connection (a *sql.DB capped at one connection) whose transactions
// start with BEGIN IMMEDIATE, and serves reads from a separate pool of
// read-only connections. In WAL mode readers never wait for that writer, so
// reads never fail with "database is locked".
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/schemas"
)

// busyTimeoutMS bounds how long a connection waits for a lock held by
// another process sharing the file (this process never contends with
// itself: it has a single writer).
const busyTimeoutMS = 10000

// Store is a store.Store on one SQLite file.
type Store struct {
	w  *sql.DB // the only connection that writes
	r  *sql.DB // read-only pool
	rq *cachedReader

	// streamMu is the in-process half of the global stream lock: it keeps
	// a position-allocating transaction from queueing behind, and so
	// holding, the writer connection while another one runs fn.
	streamMu sync.Mutex

	insertEvent, updateRoom, upsertState, insertTxn, insertOutbox *sql.Stmt
	insertEdge, dropExtremity, addExtremity, moveExtremity        *sql.Stmt
	insertGroupEntry                                              *sql.Stmt
	// The single-extremity fast path (see updateExtremities).
	advanceLinear, materialiseLinear, settleExtremities, collapseExtremities *sql.Stmt
	// The room server's once-per-batch look-ups, also prepared: parsing
	// them cost more than running them.
	txnEvents, getRooms *sql.Stmt
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and applies
// pending migrations. path must name a file: the writer and the readers
// are separate connections, which an in-memory database cannot share.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		return nil, fmt.Errorf("sqlite: open %q: need a plain file path", path)
	}
	// mmap and a larger page cache: /sync reads the same hot pages
	// thousands of times a second, and without mmap every page miss is a
	// pread system call.
	common := "_busy_timeout=" + strconv.Itoa(busyTimeoutMS) + "&_foreign_keys=1" +
		"&_pragma=mmap_size(268435456)&_pragma=cache_size(-32000)"
	// synchronous=FULL: in WAL mode NORMAL may lose the last commits on
	// power loss, and an acknowledged medical message must not vanish.
	w, err := sql.Open("sqlite", path+"?"+common+"&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	// Readers are opened only now: WAL mode is set on the file by the
	// writer above, and query_only turns a write slipped onto the reader
	// pool into an error instead of a hidden lock contender.
	r, err := sql.Open("sqlite", path+"?"+common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	// Readers block in SQLite's page I/O, not only on CPU: hundreds of
	// /sync long-polls waking at once queue on a small pool.
	r.SetMaxOpenConns(max(16, 4*runtime.GOMAXPROCS(0)))
	r.SetMaxIdleConns(max(16, 4*runtime.GOMAXPROCS(0)))
	s.r = r
	s.rq = newCachedReader(r)
	if err := r.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(schemas.Migrations, "migrations/sqlite")
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// prepare compiles the per-event statements once on the writer connection;
// InsertEvent runs five of them per event, and parsing dominates otherwise.
func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.insertEvent, `INSERT INTO events (pos, event_id, room_id, type, state_key, sender, depth, origin_ts, membership, json, door,
			flags, state_before, state_after)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.updateRoom, `UPDATE rooms SET last_event_id = ?, depth = MAX(depth, ?), state_group = ? WHERE room_id = ?`},
		{&s.insertEdge, `INSERT OR IGNORE INTO event_edges (prev_event_id, event_id) VALUES (?, ?)`},
		{&s.dropExtremity, `DELETE FROM room_extremities WHERE room_id = ? AND event_id = ?`},
		{&s.addExtremity, `INSERT OR IGNORE INTO room_extremities (room_id, event_id, depth)
			SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM event_edges WHERE prev_event_id = ?2)`},
		{&s.moveExtremity, `UPDATE room_extremities SET event_id = ?1, depth = ?2
			WHERE room_id = ?3 AND event_id = ?4 AND NOT EXISTS (SELECT 1 FROM event_edges WHERE prev_event_id = ?1)`},
		{&s.advanceLinear, `UPDATE rooms SET last_event_id = ?1, depth = ?2, state_group = ?3
			WHERE room_id = ?4 AND last_event_id = ?5 AND depth <= ?2
			AND NOT EXISTS (SELECT 1 FROM room_extremities WHERE room_id = ?4)
			AND NOT EXISTS (SELECT 1 FROM event_edges WHERE prev_event_id = ?1)`},
		{&s.materialiseLinear, `INSERT INTO room_extremities (room_id, event_id, depth)
			SELECT room_id, last_event_id, depth FROM rooms
			WHERE room_id = ?1 AND last_event_id <> '' AND NOT EXISTS (SELECT 1 FROM room_extremities WHERE room_id = ?1)`},
		// After the general path: a room left without extremities gets the
		// marker row (so it does not read as linear); a room back to one
		// extremity that is its head at its depth becomes linear again.
		{&s.settleExtremities, `INSERT INTO room_extremities (room_id, event_id, depth)
			SELECT ?1, '', 0 WHERE NOT EXISTS (SELECT 1 FROM room_extremities WHERE room_id = ?1)`},
		{&s.collapseExtremities, `DELETE FROM room_extremities WHERE room_id = ?1
			AND NOT EXISTS (SELECT 1 FROM room_extremities WHERE room_id = ?1 AND event_id NOT IN (?2, ''))
			AND EXISTS (SELECT 1 FROM room_extremities x JOIN rooms r ON r.room_id = x.room_id
				WHERE x.room_id = ?1 AND x.event_id = ?2 AND r.last_event_id = ?2 AND r.depth = x.depth)`},
		{&s.insertGroupEntry, `INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES (?, ?, ?, ?)`},
		{&s.upsertState, `INSERT INTO current_state (room_id, type, state_key, pos, event_id, membership)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (room_id, type, state_key) DO UPDATE
			SET pos = excluded.pos, event_id = excluded.event_id, membership = excluded.membership`},
		{&s.insertTxn, `INSERT INTO txns (user_id, device_id, scope, txn_id, event_id) VALUES (?, ?, ?, ?, ?)`},
		{&s.insertOutbox, `INSERT INTO outbox (pos, event_id, room_id) VALUES (?, ?, ?)`},
		{&s.txnEvents, `SELECT t.user_id, t.device_id, t.scope, t.txn_id, t.event_id FROM txns t
			JOIN (SELECT value ->> 0 AS u, value ->> 1 AS d, value ->> 2 AS s, value ->> 3 AS x FROM json_each(?)) k
			ON t.user_id = k.u AND t.device_id = k.d AND t.scope = k.s AND t.txn_id = k.x`},
		{&s.getRooms, `SELECT room_id, version, creator, last_event_id, depth, state_group, created_at
			FROM rooms WHERE room_id IN (SELECT value FROM json_each(?))`},
	} {
		st, err := s.w.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		*p.dst = st
	}
	return nil
}

// Ping checks both the writer and a reader.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping writer: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping readers: %w", err)
	}
	return nil
}

// Close closes the statements and both pools.
func (s *Store) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.insertEvent, s.updateRoom, s.upsertState, s.insertTxn, s.insertOutbox, s.txnEvents, s.getRooms,
		s.insertEdge, s.dropExtremity, s.addExtremity, s.moveExtremity, s.insertGroupEntry} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		s.rq.close()
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// queryer is what the read helpers need; *sql.DB and *sql.Tx both have it,
// so EventTx reads see the transaction's own writes.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func nowIfZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

func isConstraint(err error, code int) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code() == code
}

// jsonList passes a list as one parameter, expanded by json_each, so a
// long list needs neither dynamic SQL nor SQLite's variable limit.
func jsonList[T any](v []T) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("sqlite: encode list: %w", err)
	}
	return string(b), nil
}
