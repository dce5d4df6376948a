// Package postgres is the production store dialect, on pgx.
//
// Several hub processes may share one database. What keeps a single integer
// a correct /sync token among them is the global stream lock: every
// transaction that allocates a position first takes one transaction-scoped
// advisory lock, and only then draws from the stream_pos sequence. Writers
// of positions are therefore serialized across all processes and commit in
// position order.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/schemas"
)

// StreamLockID is the pg_advisory_xact_lock key of the global stream lock
// ("EIMIS" in ASCII). Exported so operational tooling can see who holds it
// in pg_locks.
const StreamLockID int64 = 0x45494d4953

// flushEvery bounds how many events an EventTx buffers before sending them,
// so a huge WriteEvents does not build one unbounded batch.
const flushEvery = 1000

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	// stream admits one position writer of this process at a time to the
	// advisory lock. Without it, writers queued on the lock would each hold
	// a pooled connection while waiting and could starve readers of the
	// pool; with it they wait here, holding nothing.
	stream chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open connects to url (a libpq URL or keyword/value string) and applies
// pending migrations. Several processes may call Open on one database at
// once: goose serializes them with a session advisory lock, and the losers
// find nothing left to apply.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, stream: make(chan struct{}, 1)}, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(schemas.Migrations, "migrations/postgres")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	// Retry every second (not goose's default five) so a hub starting next
	// to another one is not held up longer than the migration itself; give
	// up after ten minutes, which only a stuck migration would need.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func pgCode(err error) (code, constraint string) {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code, e.ConstraintName
	}
	return "", ""
}

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

func nowIfZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// Accounts and devices.

func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO accounts (localpart, password_hash, admin, display_name, avatar_url, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (localpart) DO NOTHING`,
		a.Localpart, a.PasswordHash, a.Admin, a.DisplayName, a.AvatarURL, nowIfZero(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: create account %q: %w", a.Localpart, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create account %q: %w", a.Localpart, store.ErrExists)
	}
	return nil
}

func (s *Store) GetAccount(ctx context.Context, localpart string) (*store.Account, error) {
	var a store.Account
	err := s.pool.QueryRow(ctx, `SELECT localpart, password_hash, admin, display_name, avatar_url, created_at
		FROM accounts WHERE localpart = $1`, localpart).
		Scan(&a.Localpart, &a.PasswordHash, &a.Admin, &a.DisplayName, &a.AvatarURL, &a.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: account %q: %w", localpart, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: account %q: %w", localpart, err)
	}
	return &a, nil
}

func (s *Store) SearchAccounts(ctx context.Context, term string, limit int) ([]store.Account, error) {
	t := strings.ToLower(term)
	anywhere := store.LikePattern(term)
	rows, err := s.pool.Query(ctx, `SELECT localpart, admin, display_name, avatar_url, created_at FROM accounts
		WHERE lower(localpart) LIKE $1 ESCAPE '\' OR lower(display_name) LIKE $1 ESCAPE '\'
		ORDER BY CASE WHEN lower(localpart) = $2 OR lower(display_name) = $2 THEN 0
		              WHEN lower(localpart) LIKE $3 ESCAPE '\' OR lower(display_name) LIKE $3 ESCAPE '\' THEN 1
		              ELSE 2 END, display_name, localpart
		LIMIT $4`, anywhere, t, strings.TrimPrefix(anywhere, "%"), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: search accounts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Account, error) {
		var a store.Account
		err := r.Scan(&a.Localpart, &a.Admin, &a.DisplayName, &a.AvatarURL, &a.CreatedAt)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: search accounts: %w", err)
	}
	return out, nil
}

// execOne runs a write that must touch a row, reporting ErrNotFound when
// it touched none.
func (s *Store) execOne(ctx context.Context, what, query string, args ...any) error {
	tag, err := s.pool.Exec(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: %s: %w", what, store.ErrNotFound)
	}
	return nil
}

func (s *Store) SetDisplayName(ctx context.Context, localpart, name string) error {
	return s.execOne(ctx, "set display name of "+localpart,
		`UPDATE accounts SET display_name = $1 WHERE localpart = $2`, name, localpart)
}

func (s *Store) SetAvatarURL(ctx context.Context, localpart, url string) error {
	return s.execOne(ctx, "set avatar of "+localpart,
		`UPDATE accounts SET avatar_url = $1 WHERE localpart = $2`, url, localpart)
}

func (s *Store) CreateDevice(ctx context.Context, d store.Device) error {
	created := nowIfZero(d.CreatedAt)
	seen := d.LastSeen
	if seen.IsZero() {
		seen = created
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO devices (localpart, device_id, display_name, token_hash, created_at, last_seen)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (localpart, device_id) DO UPDATE SET display_name = excluded.display_name,
			token_hash = excluded.token_hash, created_at = excluded.created_at, last_seen = excluded.last_seen`,
		d.Localpart, d.DeviceID, d.DisplayName, d.TokenHash, created, seen)
	switch code, _ := pgCode(err); {
	case err == nil:
		return nil
	case code == foreignKeyViolation:
		return fmt.Errorf("postgres: create device %q for %q: account: %w", d.DeviceID, d.Localpart, store.ErrNotFound)
	case code == uniqueViolation:
		return fmt.Errorf("postgres: create device %q for %q: token hash: %w", d.DeviceID, d.Localpart, store.ErrExists)
	default:
		return fmt.Errorf("postgres: create device %q for %q: %w", d.DeviceID, d.Localpart, err)
	}
}

const deviceCols = `localpart, device_id, display_name, token_hash, created_at, last_seen`

func scanDevice(row pgx.Row) (store.Device, error) {
	var d store.Device
	err := row.Scan(&d.Localpart, &d.DeviceID, &d.DisplayName, &d.TokenHash, &d.CreatedAt, &d.LastSeen)
	return d, err
}

func (s *Store) DeviceByTokenHash(ctx context.Context, tokenHash []byte) (*store.Device, error) {
	d, err := scanDevice(s.pool.QueryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE token_hash = $1`, tokenHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: device by token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: device by token: %w", err)
	}
	return &d, nil
}

func (s *Store) ListDevices(ctx context.Context, localpart string) ([]store.Device, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deviceCols+` FROM devices WHERE localpart = $1 ORDER BY device_id`, localpart)
	if err != nil {
		return nil, fmt.Errorf("postgres: list devices of %q: %w", localpart, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Device, error) { return scanDevice(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list devices of %q: %w", localpart, err)
	}
	return out, nil
}

func (s *Store) DeleteDevice(ctx context.Context, localpart, deviceID string) error {
	return s.execOne(ctx, "delete device "+deviceID+" of "+localpart,
		`DELETE FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, deviceID)
}

func (s *Store) DeleteAllDevices(ctx context.Context, localpart string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM devices WHERE localpart = $1`, localpart); err != nil {
		return fmt.Errorf("postgres: delete devices of %q: %w", localpart, err)
	}
	return nil
}

func (s *Store) TouchDevice(ctx context.Context, localpart, deviceID string, at time.Time) error {
	return s.execOne(ctx, "touch device "+deviceID+" of "+localpart,
		`UPDATE devices SET last_seen = $1 WHERE localpart = $2 AND device_id = $3`, at, localpart, deviceID)
}

// Stream writes.

const (
	lockSQL    = `SELECT pg_advisory_xact_lock($1)`
	nextvalSQL = `SELECT nextval('stream_pos')`
	// setval is not undone by a rollback, which is harmless: it only ever
	// moves the sequence past positions this transaction already used.
	advanceSQL = `UPDATE stream_head SET pos = setval('stream_pos', $1) WHERE id = 1`
)

func (s *Store) enterStream(ctx context.Context) (release func(), err error) {
	select {
	case s.stream <- struct{}{}:
		return func() { <-s.stream }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("postgres: wait for stream lock: %w", ctx.Err())
	}
}

// WriteEvents runs fn in a transaction holding the global stream lock.
//
// InsertEvent does not wait for the database: positions are handed out
// from one nextval per transaction (safe because nobody else can draw from
// the sequence while the lock is held), and the rows are buffered and sent
// as a handful of set-based statements when fn reads through the EventTx,
// when the buffer fills, or at commit. A constraint violation may therefore
// surface from a later EventTx call or from WriteEvents itself; either way
// nothing commits.
//
// fn must not call PutAccountData or PutReceipt on the Store: they need
// the stream lock fn's transaction is holding, and would wait forever.
func (s *Store) WriteEvents(ctx context.Context, fn func(tx store.EventTx) error) error {
	release, err := s.enterStream(ctx)
	if err != nil {
		return err
	}
	defer release()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, lockSQL, StreamLockID); err != nil {
		return fmt.Errorf("postgres: take stream lock: %w", err)
	}
	et := &eventTx{tx: tx}
	if err := fn(et); err != nil {
		return err
	}
	if err := et.flush(ctx, true); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit events: %w", err)
	}
	return nil
}

type pendingEvent struct {
	pos int64
	store.NewEvent
}

type eventTx struct {
	tx   pgx.Tx
	last int64 // last position handed out; 0 if none yet
	// lastMember is the position of the transaction's last membership
	// event (0 if none), for the stream head's member_pos.
	lastMember int64
	// low is the last negative position handed out (events that are not
	// live); 0 if none yet.
	low     int64
	pending []pendingEvent
	err     error // first failure; poisons the transaction
}

func (t *eventTx) GetRoom(ctx context.Context, roomID string) (*store.Room, error) {
	if err := t.flush(ctx, false); err != nil {
		return nil, err
	}
	return getRoom(ctx, t.tx, roomID)
}

func (t *eventTx) CreateRoom(ctx context.Context, r store.Room) error {
	if err := t.flush(ctx, false); err != nil {
		return err
	}
	tag, err := t.tx.Exec(ctx, `INSERT INTO rooms (room_id, version, creator, last_event_id, depth, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id) DO NOTHING`,
		r.RoomID, r.Version, r.Creator, r.LastEventID, r.Depth, nowIfZero(r.CreatedAt))
	if err != nil {
		t.err = fmt.Errorf("postgres: create room %q: %w", r.RoomID, err)
		return t.err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create room %q: %w", r.RoomID, store.ErrExists)
	}
	return nil
}

func (t *eventTx) TxnEvent(ctx context.Context, k store.TxnKey) (string, error) {
	if err := t.flush(ctx, false); err != nil {
		return "", err
	}
	return txnEvent(ctx, t.tx, k)
}

func (t *eventTx) GetEvent(ctx context.Context, eventID string) (*store.Event, error) {
	if err := t.flush(ctx, false); err != nil {
		return nil, err
	}
	e, err := scanEvent(t.tx.QueryRow(ctx, `SELECT `+eventCols+` FROM events e WHERE e.event_id = $1`, eventID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: event %q: %w", eventID, store.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("postgres: event %q: %w", eventID, err)
	}
	return &e, nil
}

func (t *eventTx) RedactEvent(ctx context.Context, eventID string, redacted json.RawMessage) error {
	if err := t.flush(ctx, false); err != nil {
		return err
	}
	tag, err := t.tx.Exec(ctx, `UPDATE events SET json = $1 WHERE event_id = $2`, []byte(redacted), eventID)
	if err != nil {
		return fmt.Errorf("postgres: redact %q: %w", eventID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: redact %q: %w", eventID, store.ErrNotFound)
	}
	return nil
}

func (t *eventTx) TxnEvents(ctx context.Context, keys []store.TxnKey) (map[store.TxnKey]string, error) {
	out := make(map[store.TxnKey]string, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	if err := t.flush(ctx, false); err != nil {
		return nil, err
	}
	n := len(keys)
	users, devices, scopes, txns := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, k := range keys {
		users[i], devices[i], scopes[i], txns[i] = k.UserID, k.DeviceID, k.Scope, k.TxnID
	}
	rows, err := t.tx.Query(ctx, `SELECT t.user_id, t.device_id, t.scope, t.txn_id, t.event_id FROM txns t
		JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(u, d, s, x)
		ON t.user_id = k.u AND t.device_id = k.d AND t.scope = k.s AND t.txn_id = k.x`, users, devices, scopes, txns)
	if err != nil {
		return nil, fmt.Errorf("postgres: txns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k store.TxnKey
		var evID string
		if err := rows.Scan(&k.UserID, &k.DeviceID, &k.Scope, &k.TxnID, &evID); err != nil {
			return nil, fmt.Errorf("postgres: txns: %w", err)
		}
		out[k] = evID
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: txns: %w", err)
	}
	return out, nil
}

func (t *eventTx) GetRooms(ctx context.Context, roomIDs []string) (map[string]*store.Room, error) {
	out := make(map[string]*store.Room, len(roomIDs))
	if len(roomIDs) == 0 {
		return out, nil
	}
	if err := t.flush(ctx, false); err != nil {
		return nil, err
	}
	rows, err := t.tx.Query(ctx, `SELECT room_id, version, creator, last_event_id, depth, state_group, created_at
		FROM rooms WHERE room_id = ANY($1)`, roomIDs)
	if err != nil {
		return nil, fmt.Errorf("postgres: rooms: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r store.Room
		if err := rows.Scan(&r.RoomID, &r.Version, &r.Creator, &r.LastEventID, &r.Depth, &r.StateGroup, &r.CreatedAt); err != nil {
			return nil, fmt.Errorf("postgres: rooms: %w", err)
		}
		out[r.RoomID] = &r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: rooms: %w", err)
	}
	return out, nil
}

func (t *eventTx) CurrentState(ctx context.Context, roomID string) ([]store.Event, error) {
	if err := t.flush(ctx, false); err != nil {
		return nil, err
	}
	return currentState(ctx, t.tx, roomID)
}

func (t *eventTx) InsertEvent(ctx context.Context, e store.NewEvent) (int64, error) {
	if t.err != nil {
		return 0, t.err
	}
	if !e.Live() {
		return t.insertPast(ctx, e)
	}
	if t.last == 0 {
		if err := t.tx.QueryRow(ctx, nextvalSQL).Scan(&t.last); err != nil {
			t.err = fmt.Errorf("postgres: allocate position: %w", err)
			return 0, t.err
		}
	} else {
		t.last++
	}
	t.pending = append(t.pending, pendingEvent{pos: t.last, NewEvent: e})
	if e.StateKey != nil && e.Type == "m.room.member" {
		t.lastMember = t.last
	}
	if len(t.pending) >= flushEvery {
		if err := t.flush(ctx, false); err != nil {
			return 0, err
		}
	}
	return t.last, nil
}

// insertPast buffers an event that takes no live position (see
// store.EventTx.InsertEvent).
func (t *eventTx) insertPast(ctx context.Context, e store.NewEvent) (int64, error) {
	if e.Txn != nil {
		t.err = fmt.Errorf("postgres: insert event %q: a transaction ID on an event that is not live", e.EventID)
		return 0, t.err
	}
	if t.low == 0 {
		if err := t.tx.QueryRow(ctx, `SELECT backfill_pos FROM stream_head WHERE id = 1`).Scan(&t.low); err != nil {
			t.err = fmt.Errorf("postgres: read backfill position: %w", err)
			return 0, t.err
		}
	}
	t.low--
	t.pending = append(t.pending, pendingEvent{pos: t.low, NewEvent: e})
	if len(t.pending) >= flushEvery {
		if err := t.flush(ctx, false); err != nil {
			return 0, err
		}
	}
	return t.low, nil
}

// flush sends the buffered events as one pipelined batch of set-based
// statements; with final it also advances the sequence and stream head.
func (t *eventTx) flush(ctx context.Context, final bool) error {
	if t.err != nil {
		return t.err
	}
	b := &pgx.Batch{}
	if n := len(t.pending); n > 0 {
		queueEvents(b, t.pending)
	}
	if final && t.last > 0 {
		b.Queue(advanceSQL, t.last)
		if t.lastMember > 0 {
			b.Queue(`UPDATE stream_head SET member_pos = $1 WHERE id = 1`, t.lastMember)
		}
	}
	if final && t.low < 0 {
		b.Queue(`UPDATE stream_head SET backfill_pos = $1 WHERE id = 1`, t.low)
	}
	if b.Len() == 0 {
		return nil
	}
	err := t.tx.SendBatch(ctx, b).Close()
	if err != nil {
		code, constraint := pgCode(err)
		switch {
		case code == foreignKeyViolation && constraint == "events_room_id_fkey":
			err = fmt.Errorf("room: %w (%w)", store.ErrNotFound, err)
		case code == uniqueViolation:
			err = fmt.Errorf("%s: %w (%w)", constraint, store.ErrExists, err)
		}
		t.err = fmt.Errorf("postgres: insert events: %w", err)
		return t.err
	}
	t.pending = t.pending[:0]
	return nil
}

// queueEvents adds the statements that store evs, in the order they were
// inserted, to b. Each table gets one statement over unnest()ed arrays.
func queueEvents(b *pgx.Batch, evs []pendingEvent) {
	n := len(evs)
	var (
		pos       = make([]int64, n)
		ids       = make([]string, n)
		rooms     = make([]string, n)
		types     = make([]string, n)
		stateKeys = make([]*string, n)
		senders   = make([]string, n)
		depths    = make([]int64, n)
		ts        = make([]int64, n)
		members   = make([]string, n)
		jsons     = make([][]byte, n)
		doors     = make([]string, n)
		flags     = make([]int64, n)
		befores   = make([]int64, n)
		afters    = make([]int64, n)
	)
	var edgePrev, edgeEvent []string
	var liveIdx []int
	// Later events win: a set-based upsert may touch each row only once,
	// so the room heads and state rows are reduced to their last writer.
	lastInRoom := map[string]int{}
	type stateKey struct{ room, typ, key string }
	lastState := map[stateKey]int{}
	var txnIdx []int
	for i, e := range evs {
		pos[i], ids[i], rooms[i], types[i], stateKeys[i] = e.pos, e.EventID, e.RoomID, e.Type, e.StateKey
		senders[i], depths[i], ts[i], members[i], jsons[i], doors[i] = e.Sender, e.Depth, e.OriginTS, e.Membership, e.JSON, e.Door
		flags[i], befores[i], afters[i] = int64(e.Flags), e.StateBefore, e.StateAfter
		if e.Flags == 0 && !e.Local {
			for _, prev := range e.PrevEvents {
				edgePrev, edgeEvent = append(edgePrev, prev), append(edgeEvent, e.EventID)
			}
		}
		if !e.Live() {
			continue
		}
		liveIdx = append(liveIdx, i)
		lastInRoom[e.RoomID] = i
		if e.StateKey != nil {
			lastState[stateKey{e.RoomID, e.Type, *e.StateKey}] = i
		}
		if e.Txn != nil {
			txnIdx = append(txnIdx, i)
		}
	}
	b.Queue(`INSERT INTO events (pos, event_id, room_id, type, state_key, sender, depth, origin_ts, membership, json, door,
			flags, state_before, state_after)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::bigint[], $8::bigint[], $9::text[], $10::bytea[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[])`,
		pos, ids, rooms, types, stateKeys, senders, depths, ts, members, jsons, doors, flags, befores, afters)
	if len(edgePrev) > 0 {
		b.Queue(`INSERT INTO event_edges (prev_event_id, event_id)
			SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`, edgePrev, edgeEvent)
	}
	if len(liveIdx) == 0 {
		return
	}

	// Extremities, in one statement: this flush's live events' prev_events
	// leave them, and every live event joins them unless an event of this
	// flush or a stored one (the edges, inserted above) names it as a
	// prev_event.
	named := map[string]bool{}
	var xRoom, xEvent, pRoom, pEvent []string
	var xDepth []int64
	for _, i := range liveIdx {
		for _, prev := range evs[i].PrevEvents {
			named[prev] = true
			pRoom, pEvent = append(pRoom, rooms[i]), append(pEvent, prev)
		}
	}
	for _, i := range liveIdx {
		if !named[ids[i]] {
			xRoom, xEvent, xDepth = append(xRoom, rooms[i]), append(xEvent, ids[i]), append(xDepth, depths[i])
		}
	}
	b.Queue(`WITH gone AS (
			DELETE FROM room_extremities x USING unnest($4::text[], $5::text[]) AS p (r, e)
			WHERE x.room_id = p.r AND x.event_id = p.e
		)
		INSERT INTO room_extremities (room_id, event_id, depth)
		SELECT x.r, x.e, x.d FROM unnest($1::text[], $2::text[], $3::bigint[]) AS x (r, e, d)
		WHERE NOT EXISTS (SELECT 1 FROM event_edges WHERE prev_event_id = x.e)
		ON CONFLICT DO NOTHING`, xRoom, xEvent, xDepth, pRoom, pEvent)

	var hRoom, hEvent []string
	var hDepth, hGroup []int64
	maxDepth := map[string]int64{}
	for _, i := range liveIdx {
		maxDepth[rooms[i]] = max(maxDepth[rooms[i]], depths[i])
	}
	for room, i := range lastInRoom {
		hRoom, hEvent, hDepth, hGroup = append(hRoom, room), append(hEvent, ids[i]), append(hDepth, maxDepth[room]), append(hGroup, afters[i])
	}
	b.Queue(`UPDATE rooms SET last_event_id = h.event_id, depth = GREATEST(rooms.depth, h.depth), state_group = h.state_group
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS h (room_id, event_id, depth, state_group)
		WHERE rooms.room_id = h.room_id`, hRoom, hEvent, hDepth, hGroup)

	if len(lastState) > 0 {
		var sRoom, sType, sKey, sEvent, sMember []string
		var sPos []int64
		for k, i := range lastState {
			sRoom, sType, sKey = append(sRoom, k.room), append(sType, k.typ), append(sKey, k.key)
			sPos, sEvent, sMember = append(sPos, pos[i]), append(sEvent, ids[i]), append(sMember, members[i])
		}
		b.Queue(`INSERT INTO current_state (room_id, type, state_key, pos, event_id, membership)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])
			ON CONFLICT (room_id, type, state_key) DO UPDATE
			SET pos = excluded.pos, event_id = excluded.event_id, membership = excluded.membership`,
			sRoom, sType, sKey, sPos, sEvent, sMember)
	}

	if len(txnIdx) > 0 {
		var tUser, tDevice, tScope, tTxn, tEvent []string
		for _, i := range txnIdx {
			k := evs[i].Txn
			tUser, tDevice, tScope = append(tUser, k.UserID), append(tDevice, k.DeviceID), append(tScope, k.Scope)
			tTxn, tEvent = append(tTxn, k.TxnID), append(tEvent, ids[i])
		}
		b.Queue(`INSERT INTO txns (user_id, device_id, scope, txn_id, event_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])`, tUser, tDevice, tScope, tTxn, tEvent)
	}

	oPos, oID, oRoom := make([]int64, 0, len(liveIdx)), make([]string, 0, len(liveIdx)), make([]string, 0, len(liveIdx))
	for _, i := range liveIdx {
		oPos, oID, oRoom = append(oPos, pos[i]), append(oID, ids[i]), append(oRoom, rooms[i])
	}
	b.Queue(`INSERT INTO outbox (pos, event_id, room_id) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])`,
		oPos, oID, oRoom)
}

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

// Reads.

// querier is what the read helpers need; the pool and a pgx.Tx both have
// it, so EventTx reads see the transaction's own writes.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
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

func (s *Store) GetRoom(ctx context.Context, roomID string) (*store.Room, error) {
	return getRoom(ctx, s.pool, roomID)
}

func getRoom(ctx context.Context, q querier, roomID string) (*store.Room, error) {
	var r store.Room
	err := q.QueryRow(ctx, `SELECT room_id, version, creator, last_event_id, depth, state_group, created_at
		FROM rooms WHERE room_id = $1`, roomID).
		Scan(&r.RoomID, &r.Version, &r.Creator, &r.LastEventID, &r.Depth, &r.StateGroup, &r.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: room %q: %w", roomID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: room %q: %w", roomID, err)
	}
	return &r, nil
}

const eventCols = `e.pos, e.event_id, e.room_id, e.type, e.state_key, e.sender, e.depth, e.origin_ts, e.membership, e.json, e.door,
	e.flags, e.state_before, e.state_after`

func scanEvent(row pgx.Row) (store.Event, error) {
	var e store.Event
	var js []byte
	err := row.Scan(&e.Pos, &e.EventID, &e.RoomID, &e.Type, &e.StateKey, &e.Sender, &e.Depth, &e.OriginTS, &e.Membership, &js, &e.Door, &e.Flags, &e.StateBefore, &e.StateAfter)
	e.JSON = js
	return e, err
}

func queryEvents(ctx context.Context, q querier, what, query string, args ...any) ([]store.Event, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Event, error) { return scanEvent(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return out, nil
}

func (s *Store) EventByID(ctx context.Context, eventID string) (*store.Event, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventCols+` FROM events e WHERE e.event_id = $1 AND e.flags = 0`, eventID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: event %q: %w", eventID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: event %q: %w", eventID, err)
	}
	return &e, nil
}

// EventsByID returns the stored events among eventIDs, in position order.
func (s *Store) EventsByID(ctx context.Context, eventIDs []string) ([]store.Event, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	return queryEvents(ctx, s.pool, "events by id",
		`SELECT `+eventCols+` FROM events e WHERE e.event_id = ANY($1) AND e.flags = 0 ORDER BY e.pos`, eventIDs)
}

func (s *Store) RoomEvents(ctx context.Context, roomID string, from, to int64, limit int, dir store.Direction) ([]store.Event, error) {
	order := "ASC"
	if dir == store.Backward {
		order = "DESC"
	}
	var lim any // NULL: no limit
	if limit > 0 {
		lim = int64(limit)
	}
	return queryEvents(ctx, s.pool, "room events", `SELECT `+eventCols+` FROM events e
		WHERE e.room_id = $1 AND e.pos > $2 AND e.pos <= $3 AND e.pos > 0 AND e.flags = 0 ORDER BY e.pos `+order+` LIMIT $4`,
		roomID, from, to, lim)
}

func (s *Store) StateEventsBetween(ctx context.Context, roomID string, from, to int64) ([]store.Event, error) {
	return queryEvents(ctx, s.pool, "state events", `SELECT `+eventCols+` FROM events e
		WHERE e.room_id = $1 AND e.state_key IS NOT NULL AND e.pos > $2 AND e.pos <= $3 AND e.pos > 0 AND e.flags = 0 ORDER BY e.pos`,
		roomID, from, to)
}

// CurrentState returns the room's current state events in position order.
func (s *Store) CurrentState(ctx context.Context, roomID string) ([]store.Event, error) {
	return currentState(ctx, s.pool, roomID)
}

func currentState(ctx context.Context, q querier, roomID string) ([]store.Event, error) {
	return queryEvents(ctx, q, "current state", `SELECT `+eventCols+` FROM current_state c
		JOIN events e ON e.pos = c.pos WHERE c.room_id = $1 ORDER BY e.pos`, roomID)
}

func (s *Store) CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (*store.Event, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventCols+` FROM current_state c
		JOIN events e ON e.pos = c.pos WHERE c.room_id = $1 AND c.type = $2 AND c.state_key = $3`, roomID, evType, stateKey))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: state %q/%q in %q: %w", evType, stateKey, roomID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: state %q/%q in %q: %w", evType, stateKey, roomID, err)
	}
	return &e, nil
}

func (s *Store) queryMemberships(ctx context.Context, what, query string, args ...any) ([]store.Membership, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Membership, error) {
		var m store.Membership
		err := r.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Pos)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return out, nil
}

// UserMemberships returns the user's memberships in position order.
func (s *Store) UserMemberships(ctx context.Context, userID string) ([]store.Membership, error) {
	return s.queryMemberships(ctx, "memberships of "+userID, `SELECT room_id, state_key, membership, event_id, pos
		FROM current_state WHERE type = 'm.room.member' AND state_key = $1 ORDER BY pos`, userID)
}

// RoomMembers returns the room's memberships ordered by user ID.
func (s *Store) RoomMembers(ctx context.Context, roomID, membership string) ([]store.Membership, error) {
	return s.queryMemberships(ctx, "members of "+roomID, `SELECT room_id, state_key, membership, event_id, pos
		FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND ($2 = '' OR membership = $2)
		ORDER BY state_key`, roomID, membership)
}

func (s *Store) TxnEvent(ctx context.Context, k store.TxnKey) (string, error) {
	return txnEvent(ctx, s.pool, k)
}

func txnEvent(ctx context.Context, q querier, k store.TxnKey) (string, error) {
	var id string
	err := q.QueryRow(ctx, `SELECT event_id FROM txns WHERE user_id = $1 AND device_id = $2 AND scope = $3 AND txn_id = $4`,
		k.UserID, k.DeviceID, k.Scope, k.TxnID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: txn %q: %w", k.TxnID, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: txn %q: %w", k.TxnID, err)
	}
	return id, nil
}

// Aliases.

func (s *Store) PutAlias(ctx context.Context, alias, roomID, creator string) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO aliases (alias, room_id, creator, created_at) VALUES ($1, $2, $3, now())
		ON CONFLICT (alias) DO NOTHING`, alias, roomID, creator)
	if err != nil {
		return fmt.Errorf("postgres: put alias %q: %w", alias, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: put alias %q: %w", alias, store.ErrExists)
	}
	return nil
}

func (s *Store) ResolveAlias(ctx context.Context, alias string) (string, error) {
	var roomID string
	err := s.pool.QueryRow(ctx, `SELECT room_id FROM aliases WHERE alias = $1`, alias).Scan(&roomID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: alias %q: %w", alias, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: alias %q: %w", alias, err)
	}
	return roomID, nil
}

func (s *Store) DeleteAlias(ctx context.Context, alias string) error {
	return s.execOne(ctx, "delete alias "+alias, `DELETE FROM aliases WHERE alias = $1`, alias)
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

// Outbox.

// PendingOutbox returns up to limit entries above position after (all if
// limit <= 0), oldest first.
func (s *Store) PendingOutbox(ctx context.Context, after int64, limit int) ([]store.OutboxEntry, error) {
	var lim any
	if limit > 0 {
		lim = int64(limit)
	}
	rows, err := s.pool.Query(ctx, `SELECT pos, event_id, room_id FROM outbox WHERE pos > $1 ORDER BY pos LIMIT $2`, after, lim)
	if err != nil {
		return nil, fmt.Errorf("postgres: pending outbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.OutboxEntry, error) {
		var o store.OutboxEntry
		err := r.Scan(&o.Pos, &o.EventID, &o.RoomID)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: pending outbox: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteOutbox(ctx context.Context, positions []int64) error {
	if len(positions) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM outbox WHERE pos = ANY($1)`, positions); err != nil {
		return fmt.Errorf("postgres: delete outbox: %w", err)
	}
	return nil
}

// Meta.

func (s *Store) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: meta %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres: meta %q: %w", key, err)
	}
	return v, nil
}

func (s *Store) PutMeta(ctx context.Context, key, value string) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("postgres: put meta %q: %w", key, err)
	}
	return nil
}

// Health directory.

var errImportDone = errors.New("postgres: directory import already committed or aborted")

var directoryColumns = []string{"generation", "idnat", "rpps", "civility", "last_name", "first_name",
	"professions", "activities", "active", "updated_at"}

func (s *Store) BeginDirectoryImport(ctx context.Context) (store.DirectoryImport, error) {
	var gen int64
	// Both assignments read the old last_generation, so they agree. The
	// row lock this takes waits for any Add or Commit in flight, which is
	// what fences the import being superseded.
	err := s.pool.QueryRow(ctx, `UPDATE directory_meta
		SET last_generation = last_generation + 1, building_generation = last_generation + 1
		WHERE id = 1 RETURNING building_generation`).Scan(&gen)
	if err != nil {
		return nil, fmt.Errorf("postgres: begin directory import: %w", err)
	}
	if err := s.cleanDirectory(ctx); err != nil {
		return nil, fmt.Errorf("postgres: begin directory import: %w", err)
	}
	return &directoryImport{s: s, gen: gen}, nil
}

// cleanDirectory deletes the rows of every generation that is neither
// current nor being built. Unlike SQLite, one statement is fine here: the
// delete blocks neither readers nor the hub's other writers, only a
// concurrent BeginDirectoryImport, which waits on the share lock.
func (s *Store) cleanDirectory(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("clean directory: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	var cur, bld int64
	if err := tx.QueryRow(ctx, `SELECT current_generation, building_generation FROM directory_meta
		WHERE id = 1 FOR SHARE`).Scan(&cur, &bld); err != nil {
		return fmt.Errorf("clean directory: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM directory_practitioners WHERE generation <> $1 AND generation <> $2`, cur, bld); err != nil {
		return fmt.Errorf("clean directory: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("clean directory: commit: %w", err)
	}
	return nil
}

type directoryImport struct {
	s    *Store
	gen  int64
	done bool
}

// claim checks, inside tx, that this import still owns the generation
// being built and returns the current one. lock is "SHARE" for Add (many
// batches may hold it) or "UPDATE" for Commit.
func (im *directoryImport) claim(ctx context.Context, tx pgx.Tx, lock string) (cur int64, err error) {
	var bld int64
	if err := tx.QueryRow(ctx, `SELECT current_generation, building_generation FROM directory_meta
		WHERE id = 1 FOR `+lock).Scan(&cur, &bld); err != nil {
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
	tx, err := im.s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: directory add: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if _, err := im.claim(ctx, tx, "SHARE"); err != nil {
		return fmt.Errorf("postgres: directory add: %w", err)
	}
	now := time.Now()
	src := pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
		r := &recs[i]
		return []any{im.gen, r.IDNat, r.RPPS, r.Civility, r.LastName, r.FirstName,
			jsonText(r.Professions), jsonText(r.Activities), r.Active, now}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"directory_practitioners"}, directoryColumns, src); err != nil {
		if code, _ := pgCode(err); code == uniqueViolation {
			return fmt.Errorf("postgres: directory add: %w: %w", store.ErrExists, err)
		}
		return fmt.Errorf("postgres: directory add: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: directory add: commit: %w", err)
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
	tx, err := im.s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: directory commit: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	cur, err := im.claim(ctx, tx, "UPDATE")
	if err != nil {
		return 0, fmt.Errorf("postgres: directory commit: %w", err)
	}
	now := time.Now()
	// Those already inactive keep the time they were first found missing.
	var inactivated int
	err = tx.QueryRow(ctx, `WITH absent AS (
			SELECT * FROM directory_practitioners o
			WHERE o.generation = $3 AND NOT EXISTS (
				SELECT 1 FROM directory_practitioners n WHERE n.generation = $1 AND n.idnat = o.idnat)),
		carried AS (
			INSERT INTO directory_practitioners
				(generation, idnat, rpps, civility, last_name, first_name, professions, activities, active, updated_at)
			SELECT $1, idnat, rpps, civility, last_name, first_name, professions, activities, false,
				CASE WHEN active THEN $2 ELSE updated_at END
			FROM absent)
		SELECT count(*) FILTER (WHERE active) FROM absent`, im.gen, now, cur).Scan(&inactivated)
	if err != nil {
		return 0, fmt.Errorf("postgres: directory commit: carry over absent: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE directory_meta
		SET current_generation = $1, building_generation = 0, imported_at = $2, revision = revision + 1 WHERE id = 1`, im.gen, now); err != nil {
		return 0, fmt.Errorf("postgres: directory commit: switch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("postgres: directory commit: %w", err)
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
	if _, err := im.s.pool.Exec(ctx, `UPDATE directory_meta SET building_generation = 0
		WHERE id = 1 AND building_generation = $1`, im.gen); err != nil {
		return fmt.Errorf("postgres: directory abort: %w", err)
	}
	if err := im.s.cleanDirectory(ctx); err != nil {
		return fmt.Errorf("postgres: directory abort: %w", err)
	}
	return nil
}

func (s *Store) DirectoryPractitioners(ctx context.Context, fn func(store.DirectoryRecord) error) error {
	// One statement reads one snapshot, and the generation it picks is the
	// one current when it starts, so a commit during the read is not seen.
	rows, err := s.pool.Query(ctx, `SELECT p.idnat, p.rpps, p.civility, p.last_name, p.first_name,
		p.professions, p.activities, p.active, p.updated_at
		FROM directory_meta m JOIN directory_practitioners p ON p.generation = m.current_generation
		WHERE m.id = 1 ORDER BY p.idnat`)
	if err != nil {
		return fmt.Errorf("postgres: directory read: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r          store.DirectoryRecord
			prof, acts string
		)
		if err := rows.Scan(&r.IDNat, &r.RPPS, &r.Civility, &r.LastName, &r.FirstName, &prof, &acts, &r.Active, &r.UpdatedAt); err != nil {
			return fmt.Errorf("postgres: directory read: %w", err)
		}
		r.Professions, r.Activities = json.RawMessage(prof), json.RawMessage(acts)
		if err := fn(r); err != nil {
			return fmt.Errorf("postgres: directory read stopped at %s: %w", r.IDNat, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: directory read: %w", err)
	}
	return nil
}

func (s *Store) DirectoryStats(ctx context.Context) (store.DirectoryStats, error) {
	var (
		st       store.DirectoryStats
		imported *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT m.current_generation, m.imported_at,
		count(*) FILTER (WHERE p.active), count(*) FILTER (WHERE NOT p.active)
		FROM directory_meta m LEFT JOIN directory_practitioners p ON p.generation = m.current_generation
		WHERE m.id = 1 GROUP BY m.id`).Scan(&st.Generation, &imported, &st.Active, &st.Inactive)
	if err != nil {
		return st, fmt.Errorf("postgres: directory stats: %w", err)
	}
	if imported != nil {
		st.ImportedAt = *imported
	}
	return st, nil
}
