package store

import (
	"context"
	"fmt"
	"sort"
)

// EventFlags say how an event stands in its room's DAG (the Matrix
// Server-Server API's meanings). An event with no flag is a full member of
// the DAG and may be served to clients.
type EventFlags int

const (
	// FlagOutlier: the event's place in the DAG is unknown (an auth chain
	// received without its history). No state group, never in a timeline.
	FlagOutlier EventFlags = 1 << iota
	// FlagSoftFailed: valid against its own state but not against current
	// state. Stored, usable by state resolution, never sent to clients,
	// never a forward extremity.
	FlagSoftFailed
	// FlagRejected: failed authorisation. Kept only so it is not fetched
	// again; never served, never referenced, never in state.
	FlagRejected
)

// StateKey names one entry of room state.
type StateKey struct {
	Type     string
	StateKey string
}

// StateMap is a room state: each entry names the event that holds it. In a
// delta handed to NewStateGroup, "" removes the key.
type StateMap map[StateKey]string

// Extremity is one forward extremity of a room.
type Extremity struct {
	EventID string
	Depth   int64
}

// SortExtremities orders extremities highest depth first, then by event ID
// (the order local sends pick prev_events in).
func SortExtremities(xs []Extremity) {
	sort.Slice(xs, func(i, j int) bool {
		if xs[i].Depth != xs[j].Depth {
			return xs[i].Depth > xs[j].Depth
		}
		return xs[i].EventID < xs[j].EventID
	})
}

// SnapshotEvery bounds a state group's delta chain: a group whose chain of
// deltas back to a full snapshot would exceed it is stored as a snapshot.
// Reading a group costs at most this many deltas.
const SnapshotEvery = 64

// DAGTx is the room server's view of the DAG inside WriteEvents. Every read
// sees the transaction's own writes.
type DAGTx interface {
	// Extremities returns the room's forward extremities, highest depth
	// first (SortExtremities).
	Extremities(ctx context.Context, roomID string) ([]Extremity, error)
	// NewStateGroup stores the state prev + delta and returns its group;
	// prev 0 means delta is the whole state. The store keeps it as a delta
	// against prev, or as a snapshot when the chain is long enough.
	NewStateGroup(ctx context.Context, roomID string, prev int64, delta StateMap) (int64, error)
	// StateGroup returns the full state of a group (ErrNotFound if none).
	StateGroup(ctx context.Context, group int64) (StateMap, error)
	// SetCurrentState makes state (group's full state) the room's current
	// state: rooms.state_group and the materialised current_state rows.
	// Every event of state must be stored; if a membership changes, the
	// membership stream head moves so /sync looks again.
	SetCurrentState(ctx context.Context, roomID string, group int64, state StateMap) error
	// EventsByIDAny returns the stored events among ids whatever their
	// flags (missing IDs are skipped).
	EventsByIDAny(ctx context.Context, ids []string) ([]Event, error)
	// PromoteOutlier gives a stored outlier its place in the DAG once its
	// prev_events are known: its flags become e.Flags (0, soft-failed or
	// rejected), its state groups e's, and its DAG edges are recorded. It
	// keeps its (negative) position, like a historical event: the
	// extremities, room head and current state do not change.
	// ErrNotFound unless the event is stored with exactly FlagOutlier.
	PromoteOutlier(ctx context.Context, e NewEvent) error
}

// DAGReader reads the DAG outside the writer.
type DAGReader interface {
	Extremities(ctx context.Context, roomID string) ([]Extremity, error)
	StateGroup(ctx context.Context, group int64) (StateMap, error)
	// RoomEventsTopo returns up to limit (0: no limit) of the room's
	// servable events (no flag; historical ones included) strictly after
	// from (Forward, ascending) or strictly before it (Backward,
	// descending) in topological order: depth, then position.
	// Only events with minPos <= pos <= maxPos are read: a reader that
	// checks history visibility by stream position bounds the scan to
	// the positions it may see.
	RoomEventsTopo(ctx context.Context, roomID string, from TopoPos, limit int, dir Direction, minPos, maxPos int64) ([]Event, error)
}

// TopoPos is a place in a room's topological order.
type TopoPos struct {
	Depth, Pos int64
}

// Topo is e's place in its room's topological order.
func (e Event) Topo() TopoPos { return TopoPos{Depth: e.Depth, Pos: e.Pos} }

// ApplyDelta returns base with delta applied ("" removes a key); base is
// not modified.
func ApplyDelta(base, delta StateMap) StateMap {
	out := make(StateMap, len(base)+len(delta))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range delta {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// Diff returns the delta that turns from into to.
func Diff(from, to StateMap) StateMap {
	d := StateMap{}
	for k, v := range to {
		if from[k] != v {
			d[k] = v
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			d[k] = ""
		}
	}
	return d
}

// StateChainSQL reads a group's delta chain, newest first (n = 0 is the
// group itself), with one row per entry and a row with NULL entry columns
// for a link that has none. Its one parameter is the group. It is plain
// SQL that both dialects run, given their placeholder.
func StateChainSQL(placeholder string) string {
	return fmt.Sprintf(stateChainSQL, placeholder, SnapshotEvery+1)
}

const stateChainSQL = `WITH RECURSIVE chain (id, prev, n) AS (
		SELECT id, prev_group, 0 FROM state_groups WHERE id = %s
		UNION ALL
		SELECT g.id, g.prev_group, c.n + 1 FROM state_groups g JOIN chain c ON g.id = c.prev
		WHERE c.prev <> 0 AND c.n <= %d
	)
	SELECT c.n, c.prev, e.type, e.state_key, e.event_id
	FROM chain c LEFT JOIN state_group_entries e ON e.group_id = c.id
	ORDER BY c.n DESC`

// ChainRow is one row of StateChainSQL.
type ChainRow struct {
	N        int
	Prev     int64
	Type     *string
	StateKey *string
	EventID  *string
}

// FoldChain turns the rows of StateChainSQL (oldest link first) into the
// group's full state.
func FoldChain(group int64, rows []ChainRow) (StateMap, error) {
	if len(rows) == 0 {
		return nil, fmt.Errorf("store: state group %d: %w", group, ErrNotFound)
	}
	if rows[0].Prev != 0 {
		return nil, fmt.Errorf("store: state group %d: %w", group, ErrStateChain)
	}
	out := StateMap{}
	for _, r := range rows {
		if r.Type == nil {
			continue
		}
		k := StateKey{Type: *r.Type, StateKey: *r.StateKey}
		if *r.EventID == "" {
			delete(out, k)
		} else {
			out[k] = *r.EventID
		}
	}
	return out, nil
}

// ErrStateChain is a delta chain that does not end at a snapshot within
// SnapshotEvery+1 links (corrupt data).
var ErrStateChain = fmt.Errorf("store: state group chain too long or broken")
