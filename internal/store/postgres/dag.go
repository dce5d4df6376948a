package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// The room DAG: forward extremities, state groups, current state.

func (s *Store) Extremities(ctx context.Context, roomID string) ([]store.Extremity, error) {
	return extremities(ctx, s.pool, roomID)
}

func (t *eventTx) Extremities(ctx context.Context, roomID string) ([]store.Extremity, error) {
	if err := t.flush(ctx, false); err != nil {
		return nil, err
	}
	return extremities(ctx, t.tx, roomID)
}

func extremities(ctx context.Context, q querier, roomID string) ([]store.Extremity, error) {
	rows, err := q.Query(ctx, `SELECT event_id, depth FROM room_extremities WHERE room_id = $1`, roomID)
	if err != nil {
		return nil, fmt.Errorf("postgres: extremities of %q: %w", roomID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Extremity, error) {
		var x store.Extremity
		err := r.Scan(&x.EventID, &x.Depth)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: extremities of %q: %w", roomID, err)
	}
	store.SortExtremities(out)
	return out, nil
}

func (s *Store) StateGroup(ctx context.Context, group int64) (store.StateMap, error) {
	return stateGroup(ctx, s.pool, group)
}

func (t *eventTx) StateGroup(ctx context.Context, group int64) (store.StateMap, error) {
	if err := t.flush(ctx, false); err != nil {
		return nil, err
	}
	return stateGroup(ctx, t.tx, group)
}

func stateGroup(ctx context.Context, q querier, group int64) (store.StateMap, error) {
	rows, err := q.Query(ctx, store.StateChainSQL("$1"), group)
	if err != nil {
		return nil, fmt.Errorf("postgres: state group %d: %w", group, err)
	}
	chain, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ChainRow, error) {
		var c store.ChainRow
		err := r.Scan(&c.N, &c.Prev, &c.Type, &c.StateKey, &c.EventID)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: state group %d: %w", group, err)
	}
	return store.FoldChain(group, chain)
}

func (t *eventTx) NewStateGroup(ctx context.Context, roomID string, prev int64, delta store.StateMap) (int64, error) {
	if err := t.flush(ctx, false); err != nil {
		return 0, err
	}
	chain := 0
	if prev != 0 {
		if err := t.tx.QueryRow(ctx, `SELECT chain FROM state_groups WHERE id = $1`, prev).Scan(&chain); errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("postgres: state group %d: %w", prev, store.ErrNotFound)
		} else if err != nil {
			return 0, fmt.Errorf("postgres: state group %d: %w", prev, err)
		}
		chain++
		if chain > store.SnapshotEvery {
			full, err := stateGroup(ctx, t.tx, prev)
			if err != nil {
				return 0, err
			}
			delta, prev, chain = store.ApplyDelta(full, delta), 0, 0
		}
	}
	var types, keys, evs []string
	for k, ev := range delta {
		if ev == "" && prev == 0 {
			continue
		}
		types, keys, evs = append(types, k.Type), append(keys, k.StateKey), append(evs, ev)
	}
	// One round trip: the group row and its entries.
	var group int64
	err := t.tx.QueryRow(ctx, `WITH g AS (
			INSERT INTO state_groups (room_id, prev_group, chain) VALUES ($1, $2, $3) RETURNING id
		), e AS (
			INSERT INTO state_group_entries (group_id, type, state_key, event_id)
			SELECT g.id, x.t, x.k, x.e FROM g, unnest($4::text[], $5::text[], $6::text[]) AS x (t, k, e)
		)
		SELECT id FROM g`, roomID, prev, chain, types, keys, evs).Scan(&group)
	if err != nil {
		t.err = fmt.Errorf("postgres: new state group: %w", err)
		return 0, t.err
	}
	return group, nil
}

func (t *eventTx) SetCurrentState(ctx context.Context, roomID string, group int64, state store.StateMap) error {
	if err := t.flush(ctx, false); err != nil {
		return err
	}
	rows, err := t.tx.Query(ctx, `SELECT type, state_key, event_id FROM current_state WHERE room_id = $1`, roomID)
	if err != nil {
		return fmt.Errorf("postgres: set current state of %q: %w", roomID, err)
	}
	cur := store.StateMap{}
	var k store.StateKey
	var ev string
	if _, err := pgx.ForEachRow(rows, []any{&k.Type, &k.StateKey, &ev}, func() error {
		cur[k] = ev
		return nil
	}); err != nil {
		return fmt.Errorf("postgres: set current state of %q: %w", roomID, err)
	}
	var upT, upK, upE, delT, delK []string
	member := false
	for k, ev := range store.Diff(cur, state) {
		member = member || k.Type == "m.room.member"
		if ev == "" {
			delT, delK = append(delT, k.Type), append(delK, k.StateKey)
		} else {
			upT, upK, upE = append(upT, k.Type), append(upK, k.StateKey), append(upE, ev)
		}
	}
	if len(delT) > 0 {
		if _, err := t.tx.Exec(ctx, `DELETE FROM current_state c USING unnest($2::text[], $3::text[]) AS d (t, k)
			WHERE c.room_id = $1 AND c.type = d.t AND c.state_key = d.k`, roomID, delT, delK); err != nil {
			t.err = fmt.Errorf("postgres: set current state of %q: %w", roomID, err)
			return t.err
		}
	}
	if len(upT) > 0 {
		tag, err := t.tx.Exec(ctx, `INSERT INTO current_state (room_id, type, state_key, pos, event_id, membership)
			SELECT e.room_id, e.type, e.state_key, e.pos, e.event_id, e.membership
			FROM unnest($2::text[], $3::text[], $4::text[]) AS u (t, k, id)
			JOIN events e ON e.event_id = u.id AND e.room_id = $1 AND e.type = u.t AND e.state_key = u.k
			ON CONFLICT (room_id, type, state_key) DO UPDATE
			SET pos = excluded.pos, event_id = excluded.event_id, membership = excluded.membership`, roomID, upT, upK, upE)
		if err != nil {
			t.err = fmt.Errorf("postgres: set current state of %q: %w", roomID, err)
			return t.err
		}
		if int(tag.RowsAffected()) != len(upT) {
			return fmt.Errorf("postgres: set current state of %q: a state event: %w", roomID, store.ErrNotFound)
		}
	}
	if member && t.last > 0 {
		t.lastMember = t.last
	}
	if _, err := t.tx.Exec(ctx, `UPDATE rooms SET state_group = $1 WHERE room_id = $2`, group, roomID); err != nil {
		t.err = fmt.Errorf("postgres: set current state of %q: %w", roomID, err)
		return t.err
	}
	return nil
}

func (t *eventTx) EventsByIDAny(ctx context.Context, ids []string) ([]store.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if err := t.flush(ctx, false); err != nil {
		return nil, err
	}
	return queryEvents(ctx, t.tx, "events by id",
		`SELECT `+eventCols+` FROM events e WHERE e.event_id = ANY($1) ORDER BY e.pos`, ids)
}

func (s *Store) RoomEventsTopo(ctx context.Context, roomID string, from store.TopoPos, limit int, dir store.Direction, minPos, maxPos int64) ([]store.Event, error) {
	cmp, order := ">", "ASC"
	if dir == store.Backward {
		cmp, order = "<", "DESC"
	}
	var lim any // NULL: no limit
	if limit > 0 {
		lim = int64(limit)
	}
	return queryEvents(ctx, s.pool, "room events by topology", `SELECT `+eventCols+` FROM events e
		WHERE e.room_id = $1 AND e.flags = 0 AND (e.depth, e.pos) `+cmp+` ($2, $3) AND e.pos BETWEEN $5 AND $6
		ORDER BY e.depth `+order+`, e.pos `+order+` LIMIT $4`, roomID, from.Depth, from.Pos, lim, minPos, maxPos)
}
