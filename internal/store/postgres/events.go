package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

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

// Reads.

// querier is what the read helpers need; the pool and a pgx.Tx both have
// it, so EventTx reads see the transaction's own writes.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
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
