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
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

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

// Accounts and devices.

func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	res, err := s.w.ExecContext(ctx, `INSERT INTO accounts (localpart, password_hash, admin, display_name, avatar_url, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (localpart) DO NOTHING`,
		a.Localpart, a.PasswordHash, a.Admin, a.DisplayName, a.AvatarURL, ms(nowIfZero(a.CreatedAt)))
	if err != nil {
		return fmt.Errorf("sqlite: create account %q: %w", a.Localpart, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: create account %q: %w", a.Localpart, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: create account %q: %w", a.Localpart, store.ErrExists)
	}
	return nil
}

func (s *Store) GetAccount(ctx context.Context, localpart string) (*store.Account, error) {
	var a store.Account
	var created int64
	err := s.rq.QueryRowContext(ctx, `SELECT localpart, password_hash, admin, display_name, avatar_url, created_at
		FROM accounts WHERE localpart = ?`, localpart).
		Scan(&a.Localpart, &a.PasswordHash, &a.Admin, &a.DisplayName, &a.AvatarURL, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: account %q: %w", localpart, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: account %q: %w", localpart, err)
	}
	a.CreatedAt = fromMS(created)
	return &a, nil
}

func (s *Store) SearchAccounts(ctx context.Context, term string, limit int) ([]store.Account, error) {
	t := strings.ToLower(term)
	rows, err := s.rq.QueryContext(ctx, `SELECT localpart, admin, display_name, avatar_url, created_at FROM accounts
		WHERE lower(localpart) LIKE ? ESCAPE '\' OR lower(display_name) LIKE ? ESCAPE '\'
		ORDER BY CASE WHEN lower(localpart) = ? OR lower(display_name) = ? THEN 0
		              WHEN lower(localpart) LIKE ? ESCAPE '\' OR lower(display_name) LIKE ? ESCAPE '\' THEN 1
		              ELSE 2 END, display_name, localpart
		LIMIT ?`, store.LikePattern(term), store.LikePattern(term), t, t,
		strings.TrimPrefix(store.LikePattern(term), "%"), strings.TrimPrefix(store.LikePattern(term), "%"), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: search accounts: %w", err)
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		var a store.Account
		var created int64
		if err := rows.Scan(&a.Localpart, &a.Admin, &a.DisplayName, &a.AvatarURL, &created); err != nil {
			return nil, fmt.Errorf("sqlite: search accounts: %w", err)
		}
		a.CreatedAt = fromMS(created)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: search accounts: %w", err)
	}
	return out, nil
}

// execOne runs a write that must touch a row, reporting ErrNotFound when
// it touched none.
func (s *Store) execOne(ctx context.Context, what, query string, args ...any) error {
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: %s: %w", what, store.ErrNotFound)
	}
	return nil
}

func (s *Store) SetDisplayName(ctx context.Context, localpart, name string) error {
	return s.execOne(ctx, "set display name of "+localpart,
		`UPDATE accounts SET display_name = ? WHERE localpart = ?`, name, localpart)
}

func (s *Store) SetAvatarURL(ctx context.Context, localpart, url string) error {
	return s.execOne(ctx, "set avatar of "+localpart,
		`UPDATE accounts SET avatar_url = ? WHERE localpart = ?`, url, localpart)
}

func (s *Store) CreateDevice(ctx context.Context, d store.Device) error {
	created := nowIfZero(d.CreatedAt)
	seen := d.LastSeen
	if seen.IsZero() {
		seen = created
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO devices (localpart, device_id, display_name, token_hash, created_at, last_seen)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (localpart, device_id) DO UPDATE SET display_name = excluded.display_name,
			token_hash = excluded.token_hash, created_at = excluded.created_at, last_seen = excluded.last_seen`,
		d.Localpart, d.DeviceID, d.DisplayName, d.TokenHash, ms(created), ms(seen))
	switch {
	case err == nil:
		return nil
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY):
		return fmt.Errorf("sqlite: create device %q for %q: account: %w", d.DeviceID, d.Localpart, store.ErrNotFound)
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return fmt.Errorf("sqlite: create device %q for %q: token hash: %w", d.DeviceID, d.Localpart, store.ErrExists)
	default:
		return fmt.Errorf("sqlite: create device %q for %q: %w", d.DeviceID, d.Localpart, err)
	}
}

const deviceCols = `localpart, device_id, display_name, token_hash, created_at, last_seen`

func scanDevice(sc interface{ Scan(...any) error }) (store.Device, error) {
	var d store.Device
	var created, seen int64
	if err := sc.Scan(&d.Localpart, &d.DeviceID, &d.DisplayName, &d.TokenHash, &created, &seen); err != nil {
		return d, err
	}
	d.CreatedAt, d.LastSeen = fromMS(created), fromMS(seen)
	return d, nil
}

func (s *Store) DeviceByTokenHash(ctx context.Context, tokenHash []byte) (*store.Device, error) {
	d, err := scanDevice(s.rq.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE token_hash = ?`, tokenHash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: device by token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: device by token: %w", err)
	}
	return &d, nil
}

func (s *Store) ListDevices(ctx context.Context, localpart string) ([]store.Device, error) {
	rows, err := s.rq.QueryContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE localpart = ? ORDER BY device_id`, localpart)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list devices of %q: %w", localpart, err)
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list devices of %q: %w", localpart, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list devices of %q: %w", localpart, err)
	}
	return out, nil
}

func (s *Store) DeleteDevice(ctx context.Context, localpart, deviceID string) error {
	return s.execOne(ctx, "delete device "+deviceID+" of "+localpart,
		`DELETE FROM devices WHERE localpart = ? AND device_id = ?`, localpart, deviceID)
}

func (s *Store) DeleteAllDevices(ctx context.Context, localpart string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM devices WHERE localpart = ?`, localpart); err != nil {
		return fmt.Errorf("sqlite: delete devices of %q: %w", localpart, err)
	}
	return nil
}

func (s *Store) TouchDevice(ctx context.Context, localpart, deviceID string, at time.Time) error {
	return s.execOne(ctx, "touch device "+deviceID+" of "+localpart,
		`UPDATE devices SET last_seen = ? WHERE localpart = ? AND device_id = ?`, ms(at), localpart, deviceID)
}

// Stream writes.

// beginStream takes the global stream lock: the process mutex, then the
// writer connection with BEGIN IMMEDIATE (which also excludes any other
// process on the same file). The returned function releases the mutex.
func (s *Store) beginStream(ctx context.Context) (*sql.Tx, func(), error) {
	s.streamMu.Lock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		s.streamMu.Unlock()
		return nil, nil, fmt.Errorf("sqlite: begin: %w", err)
	}
	return tx, s.streamMu.Unlock, nil
}

func streamHead(ctx context.Context, tx *sql.Tx) (int64, error) {
	var pos int64
	if err := tx.QueryRowContext(ctx, `SELECT pos FROM stream_head WHERE id = 1`).Scan(&pos); err != nil {
		return 0, fmt.Errorf("sqlite: read stream head: %w", err)
	}
	return pos, nil
}

// setStreamHead advances the head and, when kind names one of the
// per-kind head columns, that column too (kindPos > 0).
func setStreamHead(ctx context.Context, tx *sql.Tx, pos int64, kind string, kindPos int64) error {
	q, args := `UPDATE stream_head SET pos = ? WHERE id = 1`, []any{pos}
	if kind != "" && kindPos > 0 {
		q, args = `UPDATE stream_head SET pos = ?, `+kind+` = ? WHERE id = 1`, []any{pos, kindPos}
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("sqlite: advance stream head: %w", err)
	}
	return nil
}

// WriteEvents runs fn in one BEGIN IMMEDIATE transaction on the writer
// connection. fn must write only through tx: any other write of this Store
// needs the writer connection fn is holding, and would wait forever.
// Reads through the Store are fine but do not see fn's uncommitted writes.
func (s *Store) WriteEvents(ctx context.Context, fn func(tx store.EventTx) error) error {
	tx, unlock, err := s.beginStream(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	et := &eventTx{s: s, tx: tx}
	if err := fn(et); err != nil {
		return err
	}
	// A failed InsertEvent may have left half an event behind; never
	// commit that, even if fn chose to ignore the error.
	if et.err != nil {
		return et.err
	}
	if et.last > 0 {
		if err := setStreamHead(ctx, tx, et.last, "member_pos", et.lastMember); err != nil {
			return err
		}
	}
	if et.low < 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE stream_head SET backfill_pos = ? WHERE id = 1`, et.low); err != nil {
			return fmt.Errorf("sqlite: advance backfill position: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit events: %w", err)
	}
	return nil
}

type eventTx struct {
	s          *Store
	tx         *sql.Tx
	last       int64 // last position handed out in this transaction; 0 if none
	lastMember int64 // position of the last membership event, 0 if none
	low        int64 // last negative position handed out; 0 if none
	err        error // first InsertEvent failure; poisons the transaction
	// stmts are the prepared statements bound to tx, bound once per
	// transaction rather than once per use.
	stmts map[*sql.Stmt]*sql.Stmt
}

// stmt returns the prepared statement s bound to the transaction.
func (t *eventTx) stmt(ctx context.Context, s *sql.Stmt) *sql.Stmt {
	if st, ok := t.stmts[s]; ok {
		return st
	}
	if t.stmts == nil {
		t.stmts = map[*sql.Stmt]*sql.Stmt{}
	}
	st := t.tx.StmtContext(ctx, s)
	t.stmts[s] = st
	return st
}

func (t *eventTx) GetRoom(ctx context.Context, roomID string) (*store.Room, error) {
	return getRoom(ctx, t.tx, roomID)
}

func (t *eventTx) CreateRoom(ctx context.Context, r store.Room) error {
	res, err := t.tx.ExecContext(ctx, `INSERT INTO rooms (room_id, version, creator, last_event_id, depth, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id) DO NOTHING`,
		r.RoomID, r.Version, r.Creator, r.LastEventID, r.Depth, ms(nowIfZero(r.CreatedAt)))
	if err != nil {
		return fmt.Errorf("sqlite: create room %q: %w", r.RoomID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: create room %q: %w", r.RoomID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: create room %q: %w", r.RoomID, store.ErrExists)
	}
	return nil
}

func (t *eventTx) TxnEvent(ctx context.Context, k store.TxnKey) (string, error) {
	return txnEvent(ctx, t.tx, k)
}

func (t *eventTx) GetEvent(ctx context.Context, eventID string) (*store.Event, error) {
	e, err := scanEvent(t.tx.QueryRowContext(ctx, `SELECT `+eventCols+` FROM events e WHERE e.event_id = ?`, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: event %q: %w", eventID, store.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: event %q: %w", eventID, err)
	}
	return &e, nil
}

func (t *eventTx) RedactEvent(ctx context.Context, eventID string, redacted json.RawMessage) error {
	res, err := t.tx.ExecContext(ctx, `UPDATE events SET json = ? WHERE event_id = ?`, []byte(redacted), eventID)
	if err != nil {
		return fmt.Errorf("sqlite: redact %q: %w", eventID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("sqlite: redact %q: %w", eventID, store.ErrNotFound)
	}
	return nil
}

func (t *eventTx) TxnEvents(ctx context.Context, keys []store.TxnKey) (map[store.TxnKey]string, error) {
	out := make(map[store.TxnKey]string, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	list := make([][4]string, len(keys))
	for i, k := range keys {
		list[i] = [4]string{k.UserID, k.DeviceID, k.Scope, k.TxnID}
	}
	arg, err := json.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("sqlite: txns: %w", err)
	}
	rows, err := t.tx.StmtContext(ctx, t.s.txnEvents).QueryContext(ctx, string(arg))
	if err != nil {
		return nil, fmt.Errorf("sqlite: txns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k store.TxnKey
		var evID string
		if err := rows.Scan(&k.UserID, &k.DeviceID, &k.Scope, &k.TxnID, &evID); err != nil {
			return nil, fmt.Errorf("sqlite: txns: %w", err)
		}
		out[k] = evID
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: txns: %w", err)
	}
	return out, nil
}

func (t *eventTx) GetRooms(ctx context.Context, roomIDs []string) (map[string]*store.Room, error) {
	out := make(map[string]*store.Room, len(roomIDs))
	if len(roomIDs) == 0 {
		return out, nil
	}
	arg, err := json.Marshal(roomIDs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: rooms: %w", err)
	}
	rows, err := t.tx.StmtContext(ctx, t.s.getRooms).QueryContext(ctx, string(arg))
	if err != nil {
		return nil, fmt.Errorf("sqlite: rooms: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r store.Room
		var created int64
		if err := rows.Scan(&r.RoomID, &r.Version, &r.Creator, &r.LastEventID, &r.Depth, &r.StateGroup, &created); err != nil {
			return nil, fmt.Errorf("sqlite: rooms: %w", err)
		}
		r.CreatedAt = fromMS(created)
		out[r.RoomID] = &r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: rooms: %w", err)
	}
	return out, nil
}

func (t *eventTx) CurrentState(ctx context.Context, roomID string) ([]store.Event, error) {
	return currentState(ctx, t.tx, roomID)
}

func (t *eventTx) InsertEvent(ctx context.Context, e store.NewEvent) (int64, error) {
	if t.err != nil {
		return 0, t.err
	}
	pos, err := t.insertEvent(ctx, e)
	if err != nil {
		t.err = fmt.Errorf("sqlite: insert event %q: %w", e.EventID, err)
		return 0, t.err
	}
	return pos, nil
}

func (t *eventTx) insertEvent(ctx context.Context, e store.NewEvent) (int64, error) {
	if !e.Live() {
		return t.insertPast(ctx, e)
	}
	if t.last == 0 {
		head, err := streamHead(ctx, t.tx)
		if err != nil {
			return 0, err
		}
		t.last = head
	}
	pos := t.last + 1
	st := func(s *sql.Stmt) *sql.Stmt { return t.stmt(ctx, s) }
	if _, err := st(t.s.insertEvent).ExecContext(ctx, pos, e.EventID, e.RoomID, e.Type, e.StateKey, e.Sender,
		e.Depth, e.OriginTS, e.Membership, []byte(e.JSON), e.Door, e.Flags, e.StateBefore, e.StateAfter); err != nil {
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
			return 0, fmt.Errorf("room %q: %w", e.RoomID, store.ErrNotFound)
		}
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
			return 0, fmt.Errorf("event: %w", store.ErrExists)
		}
		return 0, err
	}
	t.last = pos
	if err := t.insertEdges(ctx, e); err != nil {
		return 0, err
	}
	if err := t.advance(ctx, e); err != nil {
		return 0, err
	}
	if e.StateKey != nil {
		if _, err := st(t.s.upsertState).ExecContext(ctx, e.RoomID, e.Type, *e.StateKey, pos, e.EventID, e.Membership); err != nil {
			return 0, err
		}
		if e.Type == "m.room.member" {
			t.lastMember = pos
		}
	}
	if e.Txn != nil {
		if _, err := st(t.s.insertTxn).ExecContext(ctx, e.Txn.UserID, e.Txn.DeviceID, e.Txn.Scope, e.Txn.TxnID, e.EventID); err != nil {
			if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
				return 0, fmt.Errorf("txn %q: %w", e.Txn.TxnID, store.ErrExists)
			}
			return 0, err
		}
	}
	if _, err := st(t.s.insertOutbox).ExecContext(ctx, pos, e.EventID, e.RoomID); err != nil {
		return 0, err
	}
	return pos, nil
}

// advance moves the room's head, depth, state group and forward
// extremities past a live event.
//
// A linear room (a single extremity that is its head, at its depth) keeps
// no room_extremities rows: its extremity is read from its rooms row, and
// an event that extends it (its one prev_event is the head, or the room is
// empty and it has none) is one UPDATE of that row. Anything else takes
// the general path: the implicit extremity becomes a row first, and a room
// left without any extremity keeps a marker row (event_id ”) so it does
// not read as linear.
func (t *eventTx) advance(ctx context.Context, e store.NewEvent) error {
	if len(e.PrevEvents) <= 1 {
		prev := ""
		if len(e.PrevEvents) == 1 {
			prev = e.PrevEvents[0]
		}
		res, err := t.stmt(ctx, t.s.advanceLinear).ExecContext(ctx, e.EventID, e.Depth, e.StateAfter, e.RoomID, prev)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return nil
		}
	}
	if _, err := t.stmt(ctx, t.s.materialiseLinear).ExecContext(ctx, e.RoomID); err != nil {
		return err
	}
	if err := t.updateExtremities(ctx, e); err != nil {
		return err
	}
	if _, err := t.stmt(ctx, t.s.updateRoom).ExecContext(ctx, e.EventID, e.Depth, e.StateAfter, e.RoomID); err != nil {
		return err
	}
	if _, err := t.stmt(ctx, t.s.settleExtremities).ExecContext(ctx, e.RoomID); err != nil {
		return err
	}
	_, err := t.stmt(ctx, t.s.collapseExtremities).ExecContext(ctx, e.RoomID, e.EventID)
	return err
}

// updateExtremities takes a live event's prev_events out of the forward
// extremities and puts the event in, unless a stored event names it as a
// prev_event. The common case (one prev_event, the room's extremity) is
// one UPDATE.
func (t *eventTx) updateExtremities(ctx context.Context, e store.NewEvent) error {
	moved := false
	if len(e.PrevEvents) > 0 {
		res, err := t.stmt(ctx, t.s.moveExtremity).ExecContext(ctx, e.EventID, e.Depth, e.RoomID, e.PrevEvents[0])
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		moved = n == 1
	}
	for i, prev := range e.PrevEvents {
		if i == 0 && moved {
			continue
		}
		if _, err := t.stmt(ctx, t.s.dropExtremity).ExecContext(ctx, e.RoomID, prev); err != nil {
			return err
		}
	}
	if !moved {
		if _, err := t.stmt(ctx, t.s.addExtremity).ExecContext(ctx, e.RoomID, e.EventID, e.Depth); err != nil {
			return err
		}
	}
	return nil
}

func (t *eventTx) insertEdges(ctx context.Context, e store.NewEvent) error {
	if e.Flags != 0 || e.Local {
		return nil
	}
	st := t.stmt(ctx, t.s.insertEdge)
	for _, prev := range e.PrevEvents {
		if _, err := st.ExecContext(ctx, prev, e.EventID); err != nil {
			return err
		}
	}
	return nil
}

// insertPast stores an event that takes no live position (see
// store.EventTx.InsertEvent).
func (t *eventTx) insertPast(ctx context.Context, e store.NewEvent) (int64, error) {
	if e.Txn != nil {
		return 0, fmt.Errorf("a transaction ID on an event that is not live")
	}
	if t.low == 0 {
		if err := t.tx.QueryRowContext(ctx, `SELECT backfill_pos FROM stream_head WHERE id = 1`).Scan(&t.low); err != nil {
			return 0, fmt.Errorf("read backfill position: %w", err)
		}
	}
	pos := t.low - 1
	if _, err := t.stmt(ctx, t.s.insertEvent).ExecContext(ctx, pos, e.EventID, e.RoomID, e.Type, e.StateKey, e.Sender,
		e.Depth, e.OriginTS, e.Membership, []byte(e.JSON), e.Door, e.Flags, e.StateBefore, e.StateAfter); err != nil {
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
			return 0, fmt.Errorf("room %q: %w", e.RoomID, store.ErrNotFound)
		}
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
			return 0, fmt.Errorf("event: %w", store.ErrExists)
		}
		return 0, err
	}
	t.low = pos
	if err := t.insertEdges(ctx, e); err != nil {
		return 0, err
	}
	return pos, nil
}

// Reads.

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

func (s *Store) GetRoom(ctx context.Context, roomID string) (*store.Room, error) {
	return getRoom(ctx, s.rq, roomID)
}

func getRoom(ctx context.Context, q queryer, roomID string) (*store.Room, error) {
	var r store.Room
	var created int64
	err := q.QueryRowContext(ctx, `SELECT room_id, version, creator, last_event_id, depth, state_group, created_at
		FROM rooms WHERE room_id = ?`, roomID).
		Scan(&r.RoomID, &r.Version, &r.Creator, &r.LastEventID, &r.Depth, &r.StateGroup, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: room %q: %w", roomID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: room %q: %w", roomID, err)
	}
	r.CreatedAt = fromMS(created)
	return &r, nil
}

const eventCols = `e.pos, e.event_id, e.room_id, e.type, e.state_key, e.sender, e.depth, e.origin_ts, e.membership, e.json, e.door,
	e.flags, e.state_before, e.state_after`

func scanEvent(sc interface{ Scan(...any) error }) (store.Event, error) {
	var e store.Event
	var sk sql.NullString
	var js []byte
	if err := sc.Scan(&e.Pos, &e.EventID, &e.RoomID, &e.Type, &sk, &e.Sender, &e.Depth, &e.OriginTS, &e.Membership, &js, &e.Door,
		&e.Flags, &e.StateBefore, &e.StateAfter); err != nil {
		return e, err
	}
	if sk.Valid {
		e.StateKey = &sk.String
	}
	e.JSON = js
	return e, nil
}

func queryEvents(ctx context.Context, q queryer, what, query string, args ...any) ([]store.Event, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return out, nil
}

func (s *Store) EventByID(ctx context.Context, eventID string) (*store.Event, error) {
	e, err := scanEvent(s.rq.QueryRowContext(ctx, `SELECT `+eventCols+` FROM events e WHERE e.event_id = ? AND e.flags = 0`, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: event %q: %w", eventID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: event %q: %w", eventID, err)
	}
	return &e, nil
}

// EventsByID returns the stored events among eventIDs, in position order.
func (s *Store) EventsByID(ctx context.Context, eventIDs []string) ([]store.Event, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	list, err := jsonList(eventIDs)
	if err != nil {
		return nil, err
	}
	return queryEvents(ctx, s.rq, "events by id", `SELECT `+eventCols+` FROM events e
		WHERE e.event_id IN (SELECT value FROM json_each(?)) AND e.flags = 0 ORDER BY e.pos`, list)
}

func (s *Store) RoomEvents(ctx context.Context, roomID string, from, to int64, limit int, dir store.Direction) ([]store.Event, error) {
	order := "ASC"
	if dir == store.Backward {
		order = "DESC"
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	return queryEvents(ctx, s.rq, "room events", `SELECT `+eventCols+` FROM events e
		WHERE e.room_id = ? AND e.pos > ? AND e.pos <= ? AND e.pos > 0 AND e.flags = 0 ORDER BY e.pos `+order+` LIMIT ?`,
		roomID, from, to, limit)
}

func (s *Store) StateEventsBetween(ctx context.Context, roomID string, from, to int64) ([]store.Event, error) {
	return queryEvents(ctx, s.rq, "state events", `SELECT `+eventCols+` FROM events e
		WHERE e.room_id = ? AND e.state_key IS NOT NULL AND e.pos > ? AND e.pos <= ? AND e.pos > 0 AND e.flags = 0 ORDER BY e.pos`,
		roomID, from, to)
}

// CurrentState returns the room's current state events in position order.
func (s *Store) CurrentState(ctx context.Context, roomID string) ([]store.Event, error) {
	return currentState(ctx, s.rq, roomID)
}

func currentState(ctx context.Context, q queryer, roomID string) ([]store.Event, error) {
	return queryEvents(ctx, q, "current state", `SELECT `+eventCols+` FROM current_state c
		JOIN events e ON e.pos = c.pos WHERE c.room_id = ? ORDER BY e.pos`, roomID)
}

func (s *Store) CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (*store.Event, error) {
	e, err := scanEvent(s.rq.QueryRowContext(ctx, `SELECT `+eventCols+` FROM current_state c
		JOIN events e ON e.pos = c.pos WHERE c.room_id = ? AND c.type = ? AND c.state_key = ?`, roomID, evType, stateKey))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: state %q/%q in %q: %w", evType, stateKey, roomID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: state %q/%q in %q: %w", evType, stateKey, roomID, err)
	}
	return &e, nil
}

func (s *Store) queryMemberships(ctx context.Context, what, query string, args ...any) ([]store.Membership, error) {
	rows, err := s.rq.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	var out []store.Membership
	for rows.Next() {
		var m store.Membership
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Pos); err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return out, nil
}

// UserMemberships returns the user's memberships in position order.
func (s *Store) UserMemberships(ctx context.Context, userID string) ([]store.Membership, error) {
	return s.queryMemberships(ctx, "memberships of "+userID, `SELECT room_id, state_key, membership, event_id, pos
		FROM current_state WHERE type = 'm.room.member' AND state_key = ? ORDER BY pos`, userID)
}

// RoomMembers returns the room's memberships ordered by user ID.
func (s *Store) RoomMembers(ctx context.Context, roomID, membership string) ([]store.Membership, error) {
	return s.queryMemberships(ctx, "members of "+roomID, `SELECT room_id, state_key, membership, event_id, pos
		FROM current_state WHERE room_id = ? AND type = 'm.room.member' AND (? = '' OR membership = ?)
		ORDER BY state_key`, roomID, membership, membership)
}

func (s *Store) TxnEvent(ctx context.Context, k store.TxnKey) (string, error) {
	return txnEvent(ctx, s.rq, k)
}

func txnEvent(ctx context.Context, q queryer, k store.TxnKey) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `SELECT event_id FROM txns WHERE user_id = ? AND device_id = ? AND scope = ? AND txn_id = ?`,
		k.UserID, k.DeviceID, k.Scope, k.TxnID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: txn %q: %w", k.TxnID, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: txn %q: %w", k.TxnID, err)
	}
	return id, nil
}

// Aliases.

func (s *Store) PutAlias(ctx context.Context, alias, roomID, creator string) error {
	res, err := s.w.ExecContext(ctx, `INSERT INTO aliases (alias, room_id, creator, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (alias) DO NOTHING`, alias, roomID, creator, ms(time.Now()))
	if err != nil {
		return fmt.Errorf("sqlite: put alias %q: %w", alias, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: put alias %q: %w", alias, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: put alias %q: %w", alias, store.ErrExists)
	}
	return nil
}

func (s *Store) ResolveAlias(ctx context.Context, alias string) (string, error) {
	var roomID string
	err := s.rq.QueryRowContext(ctx, `SELECT room_id FROM aliases WHERE alias = ?`, alias).Scan(&roomID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: alias %q: %w", alias, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: alias %q: %w", alias, err)
	}
	return roomID, nil
}

func (s *Store) DeleteAlias(ctx context.Context, alias string) error {
	return s.execOne(ctx, "delete alias "+alias, `DELETE FROM aliases WHERE alias = ?`, alias)
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

// Outbox.

// PendingOutbox returns up to limit entries above position after (all if
// limit <= 0), oldest first.
func (s *Store) PendingOutbox(ctx context.Context, after int64, limit int) ([]store.OutboxEntry, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.rq.QueryContext(ctx, `SELECT pos, event_id, room_id FROM outbox WHERE pos > ? ORDER BY pos LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending outbox: %w", err)
	}
	defer rows.Close()
	var out []store.OutboxEntry
	for rows.Next() {
		var o store.OutboxEntry
		if err := rows.Scan(&o.Pos, &o.EventID, &o.RoomID); err != nil {
			return nil, fmt.Errorf("sqlite: pending outbox: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: pending outbox: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteOutbox(ctx context.Context, positions []int64) error {
	if len(positions) == 0 {
		return nil
	}
	list, err := jsonList(positions)
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM outbox WHERE pos IN (SELECT value FROM json_each(?))`, list); err != nil {
		return fmt.Errorf("sqlite: delete outbox: %w", err)
	}
	return nil
}

// Meta.

func (s *Store) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.rq.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite: meta %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: meta %q: %w", key, err)
	}
	return v, nil
}

func (s *Store) PutMeta(ctx context.Context, key, value string) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("sqlite: put meta %q: %w", key, err)
	}
	return nil
}

// Health directory.

// directoryCleanupBatch bounds each transaction deleting stale directory
// rows: the writer connection serves the whole hub, and deleting a million
// rows at once would hold message sends up for seconds.
const directoryCleanupBatch = 5000

var errImportDone = errors.New("sqlite: directory import already committed or aborted")

func (s *Store) BeginDirectoryImport(ctx context.Context) (store.DirectoryImport, error) {
	var gen int64
	// Both assignments read the old last_generation, so they agree.
	err := s.w.QueryRowContext(ctx, `UPDATE directory_meta
		SET last_generation = last_generation + 1, building_generation = last_generation + 1
		WHERE id = 1 RETURNING building_generation`).Scan(&gen)
	if err != nil {
		return nil, fmt.Errorf("sqlite: begin directory import: %w", err)
	}
	if err := s.cleanDirectory(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: begin directory import: %w", err)
	}
	return &directoryImport{s: s, gen: gen}, nil
}

// cleanDirectory deletes the rows of every generation that is neither
// current nor being built. Each batch re-reads both in its own
// transaction, so an import starting meanwhile never loses rows.
func (s *Store) cleanDirectory(ctx context.Context) error {
	for {
		n, err := s.cleanDirectoryBatch(ctx)
		if err != nil {
			return err
		}
		if n < directoryCleanupBatch {
			return nil
		}
	}
}

func (s *Store) cleanDirectoryBatch(ctx context.Context) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("clean directory: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var cur, bld int64
	if err := tx.QueryRowContext(ctx, `SELECT current_generation, building_generation FROM directory_meta WHERE id = 1`).Scan(&cur, &bld); err != nil {
		return 0, fmt.Errorf("clean directory: %w", err)
	}
	lo, hi := min(cur, bld), max(cur, bld)
	// Three open ranges around the two live generations, because a range
	// is what the primary key index serves; "generation NOT IN (…)" would
	// scan the whole table for every batch.
	var deleted int64
	for _, r := range [][2]int64{{-1, lo}, {lo, hi}, {hi, math.MaxInt64}} {
		if deleted >= directoryCleanupBatch {
			break
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM directory_practitioners WHERE rowid IN (
			SELECT rowid FROM directory_practitioners WHERE generation > ? AND generation < ? LIMIT ?)`,
			r[0], r[1], directoryCleanupBatch-deleted)
		if err != nil {
			return 0, fmt.Errorf("clean directory: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("clean directory: %w", err)
		}
		deleted += n
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("clean directory: commit: %w", err)
	}
	return deleted, nil
}

type directoryImport struct {
	s    *Store
	gen  int64
	done bool
}

// claim checks, inside tx, that this import still owns the generation
// being built and returns the current one.
func (im *directoryImport) claim(ctx context.Context, tx *sql.Tx) (cur int64, err error) {
	var bld int64
	if err := tx.QueryRowContext(ctx, `SELECT current_generation, building_generation FROM directory_meta WHERE id = 1`).Scan(&cur, &bld); err != nil {
		return 0, err
	}
	if bld != im.gen {
		return 0, fmt.Errorf("generation %d: %w", im.gen, store.ErrImportSuperseded)
	}
	return cur, nil
}

func (im *directoryImport) Add(ctx context.Context, recs []store.DirectoryRecord) error {
	if im.done {
		return errImportDone
	}
	if len(recs) == 0 {
		return nil
	}
	tx, err := im.s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: directory add: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := im.claim(ctx, tx); err != nil {
		return fmt.Errorf("sqlite: directory add: %w", err)
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO directory_practitioners
		(generation, idnat, rpps, civility, last_name, first_name, professions, activities, active, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: directory add: %w", err)
	}
	defer st.Close()
	now := ms(time.Now())
	for _, r := range recs {
		_, err := st.ExecContext(ctx, im.gen, r.IDNat, r.RPPS, r.Civility, r.LastName, r.FirstName,
			jsonText(r.Professions), jsonText(r.Activities), r.Active, now)
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
			return fmt.Errorf("sqlite: directory add %s: %w", r.IDNat, store.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("sqlite: directory add %s: %w", r.IDNat, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: directory add: commit: %w", err)
	}
	return nil
}

// jsonText stores an absent list as an empty one, so readers always get
// valid JSON back.
func jsonText(b json.RawMessage) string {
	if len(b) == 0 {
		return "[]"
	}
	return string(b)
}

func (im *directoryImport) Commit(ctx context.Context) (int, error) {
	if im.done {
		return 0, errImportDone
	}
	tx, err := im.s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	cur, err := im.claim(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: %w", err)
	}
	now := ms(time.Now())
	const absent = `FROM directory_practitioners o WHERE o.generation = ? AND NOT EXISTS (
		SELECT 1 FROM directory_practitioners n WHERE n.generation = ? AND n.idnat = o.idnat)`
	var inactivated int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) `+absent+` AND o.active`, cur, im.gen).Scan(&inactivated); err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: count absent: %w", err)
	}
	// Those already inactive keep the time they were first found missing.
	if _, err := tx.ExecContext(ctx, `INSERT INTO directory_practitioners
		(generation, idnat, rpps, civility, last_name, first_name, professions, activities, active, updated_at)
		SELECT ?, o.idnat, o.rpps, o.civility, o.last_name, o.first_name, o.professions, o.activities, 0,
			CASE WHEN o.active THEN ? ELSE o.updated_at END `+absent,
		im.gen, now, cur, im.gen); err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: carry over absent: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE directory_meta
		SET current_generation = ?, building_generation = 0, imported_at = ?, revision = revision + 1 WHERE id = 1`, im.gen, now); err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: switch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: %w", err)
	}
	im.done = true
	// The switch is done; the previous generation is only garbage now, and
	// if deleting it fails the next import deletes it instead.
	_ = im.s.cleanDirectory(ctx)
	return inactivated, nil
}

func (im *directoryImport) Abort(ctx context.Context) error {
	if im.done {
		return nil
	}
	im.done = true
	// Only release the generation if it is still ours: a newer import may
	// have taken over, and its building_generation must stay.
	if _, err := im.s.w.ExecContext(ctx, `UPDATE directory_meta SET building_generation = 0
		WHERE id = 1 AND building_generation = ?`, im.gen); err != nil {
		return fmt.Errorf("sqlite: directory abort: %w", err)
	}
	if err := im.s.cleanDirectory(ctx); err != nil {
		return fmt.Errorf("sqlite: directory abort: %w", err)
	}
	return nil
}

func (s *Store) DirectoryPractitioners(ctx context.Context, fn func(store.DirectoryRecord) error) error {
	// One statement reads one snapshot, and the generation it picks is the
	// one current when it starts, so a commit during the read is not seen.
	rows, err := s.r.QueryContext(ctx, `SELECT p.idnat, p.rpps, p.civility, p.last_name, p.first_name,
		p.professions, p.activities, p.active, p.updated_at
		FROM directory_meta m JOIN directory_practitioners p ON p.generation = m.current_generation
		WHERE m.id = 1 ORDER BY p.idnat`)
	if err != nil {
		return fmt.Errorf("sqlite: directory read: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r          store.DirectoryRecord
			prof, acts string
			updated    int64
		)
		if err := rows.Scan(&r.IDNat, &r.RPPS, &r.Civility, &r.LastName, &r.FirstName, &prof, &acts, &r.Active, &updated); err != nil {
			return fmt.Errorf("sqlite: directory read: %w", err)
		}
		r.Professions, r.Activities, r.UpdatedAt = json.RawMessage(prof), json.RawMessage(acts), fromMS(updated)
		if err := fn(r); err != nil {
			return fmt.Errorf("sqlite: directory read stopped at %s: %w", r.IDNat, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: directory read: %w", err)
	}
	return nil
}

func (s *Store) DirectoryStats(ctx context.Context) (store.DirectoryStats, error) {
	var (
		st       store.DirectoryStats
		imported int64
		total    int
	)
	err := s.r.QueryRowContext(ctx, `SELECT m.current_generation, m.imported_at,
		count(p.idnat), coalesce(sum(p.active), 0)
		FROM directory_meta m LEFT JOIN directory_practitioners p ON p.generation = m.current_generation
		WHERE m.id = 1 GROUP BY m.id`).Scan(&st.Generation, &imported, &total, &st.Active)
	if err != nil {
		return st, fmt.Errorf("sqlite: directory stats: %w", err)
	}
	st.Inactive = total - st.Active
	if imported != 0 {
		st.ImportedAt = fromMS(imported)
	}
	return st, nil
}
