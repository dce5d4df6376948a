package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/eimis-hub/eimis/internal/store"
)

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
