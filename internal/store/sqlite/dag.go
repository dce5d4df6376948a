package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/eimis-hub/eimis/internal/store"
)

// The room DAG: forward extremities, state groups, current state.
//
// A room without room_extremities rows is linear: its one extremity is its
// head (rooms.last_event_id at rooms.depth), or it has none while it has no
// event. A row with event_id '' marks a room whose extremities are rows,
// none of them left (see eventTx.advance).

func (s *Store) Extremities(ctx context.Context, roomID string) ([]store.Extremity, error) {
	return extremities(ctx, s.rq, roomID)
}

func (t *eventTx) Extremities(ctx context.Context, roomID string) ([]store.Extremity, error) {
	return extremities(ctx, t.tx, roomID)
}

func extremities(ctx context.Context, q queryer, roomID string) ([]store.Extremity, error) {
	rows, err := q.QueryContext(ctx, `SELECT event_id, depth FROM room_extremities WHERE room_id = ?1 AND event_id <> ''
		UNION ALL
		SELECT last_event_id, depth FROM rooms WHERE room_id = ?1 AND last_event_id <> ''
			AND NOT EXISTS (SELECT 1 FROM room_extremities WHERE room_id = ?1)`, roomID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: extremities of %q: %w", roomID, err)
	}
	defer rows.Close()
	var out []store.Extremity
	for rows.Next() {
		var x store.Extremity
		if err := rows.Scan(&x.EventID, &x.Depth); err != nil {
			return nil, fmt.Errorf("sqlite: extremities of %q: %w", roomID, err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: extremities of %q: %w", roomID, err)
	}
	store.SortExtremities(out)
	return out, nil
}

func (s *Store) StateGroup(ctx context.Context, group int64) (store.StateMap, error) {
	return stateGroup(ctx, s.rq, group)
}

func (t *eventTx) StateGroup(ctx context.Context, group int64) (store.StateMap, error) {
	return stateGroup(ctx, t.tx, group)
}

func stateGroup(ctx context.Context, q queryer, group int64) (store.StateMap, error) {
	rows, err := q.QueryContext(ctx, store.StateChainSQL("?"), group)
	if err != nil {
		return nil, fmt.Errorf("sqlite: state group %d: %w", group, err)
	}
	defer rows.Close()
	var chain []store.ChainRow
	for rows.Next() {
		var r store.ChainRow
		var typ, sk, ev sql.NullString
		if err := rows.Scan(&r.N, &r.Prev, &typ, &sk, &ev); err != nil {
			return nil, fmt.Errorf("sqlite: state group %d: %w", group, err)
		}
		if typ.Valid {
			r.Type, r.StateKey, r.EventID = &typ.String, &sk.String, &ev.String
		}
		chain = append(chain, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: state group %d: %w", group, err)
	}
	return store.FoldChain(group, chain)
}

func (t *eventTx) NewStateGroup(ctx context.Context, roomID string, prev int64, delta store.StateMap) (int64, error) {
	chain := 0
	if prev != 0 {
		if err := t.tx.QueryRowContext(ctx, `SELECT chain FROM state_groups WHERE id = ?`, prev).Scan(&chain); errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("sqlite: state group %d: %w", prev, store.ErrNotFound)
		} else if err != nil {
			return 0, fmt.Errorf("sqlite: state group %d: %w", prev, err)
		}
		chain++
		if chain > store.SnapshotEvery {
			full, err := t.StateGroup(ctx, prev)
			if err != nil {
				return 0, err
			}
			delta, prev, chain = store.ApplyDelta(full, delta), 0, 0
		}
	}
	res, err := t.tx.ExecContext(ctx, `INSERT INTO state_groups (room_id, prev_group, chain) VALUES (?, ?, ?)`, roomID, prev, chain)
	if err != nil {
		return 0, fmt.Errorf("sqlite: new state group: %w", err)
	}
	group, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("sqlite: new state group: %w", err)
	}
	st := t.stmt(ctx, t.s.insertGroupEntry)
	for k, ev := range delta {
		if ev == "" && prev == 0 {
			continue
		}
		if _, err := st.ExecContext(ctx, group, k.Type, k.StateKey, ev); err != nil {
			return 0, fmt.Errorf("sqlite: new state group: %w", err)
		}
	}
	return group, nil
}

func (t *eventTx) SetCurrentState(ctx context.Context, roomID string, group int64, state store.StateMap) error {
	rows, err := t.tx.QueryContext(ctx, `SELECT type, state_key, event_id FROM current_state WHERE room_id = ?`, roomID)
	if err != nil {
		return fmt.Errorf("sqlite: set current state of %q: %w", roomID, err)
	}
	cur := store.StateMap{}
	for rows.Next() {
		var k store.StateKey
		var ev string
		if err := rows.Scan(&k.Type, &k.StateKey, &ev); err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: set current state of %q: %w", roomID, err)
		}
		cur[k] = ev
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: set current state of %q: %w", roomID, err)
	}
	member := false
	for k, ev := range store.Diff(cur, state) {
		member = member || k.Type == "m.room.member"
		if ev == "" {
			_, err = t.tx.ExecContext(ctx, `DELETE FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?`, roomID, k.Type, k.StateKey)
		} else {
			var res sql.Result
			res, err = t.tx.ExecContext(ctx, `INSERT INTO current_state (room_id, type, state_key, pos, event_id, membership)
				SELECT room_id, type, state_key, pos, event_id, membership FROM events
				WHERE event_id = ? AND room_id = ? AND type = ? AND state_key = ?
				ON CONFLICT (room_id, type, state_key) DO UPDATE
				SET pos = excluded.pos, event_id = excluded.event_id, membership = excluded.membership`,
				ev, roomID, k.Type, k.StateKey)
			if err == nil {
				if n, _ := res.RowsAffected(); n == 0 {
					err = fmt.Errorf("state event %q: %w", ev, store.ErrNotFound)
				}
			}
		}
		if err != nil {
			return fmt.Errorf("sqlite: set current state of %q: %w", roomID, err)
		}
	}
	if member && t.last > 0 {
		t.lastMember = t.last
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE rooms SET state_group = ? WHERE room_id = ?`, group, roomID); err != nil {
		return fmt.Errorf("sqlite: set current state of %q: %w", roomID, err)
	}
	return nil
}

func (t *eventTx) EventsByIDAny(ctx context.Context, ids []string) ([]store.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := jsonList(ids)
	if err != nil {
		return nil, err
	}
	return queryEvents(ctx, t.tx, "events by id", `SELECT `+eventCols+` FROM events e
		WHERE e.event_id IN (SELECT value FROM json_each(?)) ORDER BY e.pos`, list)
}

func (s *Store) RoomEventsTopo(ctx context.Context, roomID string, from store.TopoPos, limit int, dir store.Direction, minPos, maxPos int64) ([]store.Event, error) {
	cmp, order := ">", "ASC"
	if dir == store.Backward {
		cmp, order = "<", "DESC"
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	return queryEvents(ctx, s.rq, "room events by topology", `SELECT `+eventCols+` FROM events e
		WHERE e.room_id = ? AND e.flags = 0 AND (e.depth, e.pos) `+cmp+` (?, ?) AND e.pos BETWEEN ? AND ?
		ORDER BY e.depth `+order+`, e.pos `+order+` LIMIT ?`, roomID, from.Depth, from.Pos, minPos, maxPos, limit)
}
