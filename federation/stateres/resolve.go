package stateres

import (
	"context"
	"fmt"
	"math/bits"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

var (
	createKey      = StateKey{Type: event.StateCreate.Type}
	powerLevelsKey = StateKey{Type: event.StatePowerLevels.Type}
)

// resolution is the working state of one Resolve call.
type resolution struct {
	ctx     context.Context
	version id.RoomVersion
	v21     bool // state resolution v2.1 (room version 12)
	fetcher EventFetcher
	getKey  pdu.GetKeyFunc
	max     int
	g       *graph

	// create is the room's create event in room version 12, found through
	// the room ID; -1 in versions 10 and 11, whose events cite it in
	// auth_events.
	create   int32
	creators map[id.UserID]struct{} // room version 12 only

	// internalErr is set by the key callback handed to eventauth when it
	// fails for a reason that is not an auth failure (no key source, a key
	// store error): Resolve then fails instead of treating the event as
	// refused.
	internalErr error
}

func (r *resolution) resolve(sets []StateMap, unconflicted StateMap, conflicted map[StateKey][]id.EventID) (StateMap, error) {
	fullConflicted, order, err := r.fullConflictedSet(sets, unconflicted, conflicted)
	if err != nil {
		return nil, err
	}

	// Step 1: the power events of the full conflicted set and the parts of
	// their auth chains inside it, in reverse topological power order.
	inX := r.powerSet(fullConflicted, order)
	sortedX, err := r.reverseTopologicalPowerOrder(inX)
	if err != nil {
		return nil, err
	}

	// Step 2: iterative auth checks from the unconflicted state map, or
	// from nothing in v2.1.
	partial := make(map[StateKey]int32, len(unconflicted)+len(conflicted))
	if !r.v21 {
		for k, e := range unconflicted {
			partial[k] = r.g.index[e]
		}
	}
	if err := r.iterativeAuthChecks(partial, sortedX); err != nil {
		return nil, err
	}

	// Step 3: the other events of the full conflicted set, in mainline
	// order of the power levels just resolved.
	var rest []int32
	for i, in := range fullConflicted {
		if in && !inX[i] {
			rest = append(rest, int32(i))
		}
	}
	pl, ok := partial[powerLevelsKey]
	if !ok {
		pl = -1
	}
	rest = r.mainlineOrder(rest, pl)

	// Step 4: iterative auth checks on top of the partial state.
	if err := r.iterativeAuthChecks(partial, rest); err != nil {
		return nil, err
	}

	// Step 5: the unconflicted state map always wins.
	out := make(StateMap, len(partial)+len(unconflicted))
	for k, i := range partial {
		out[k] = r.g.nodes[i].id
	}
	for k, e := range unconflicted {
		out[k] = e
	}
	return out, nil
}

// fullConflictedSet loads the graph and returns the full conflicted set
// (indexed by node) and a topological order of the whole graph.
func (r *resolution) fullConflictedSet(sets []StateMap, unconflicted StateMap, conflicted map[StateKey][]id.EventID) ([]bool, []int32, error) {
	// Load every event of every set, and their auth chains.
	var roots []id.EventID
	for _, e := range unconflicted {
		roots = append(roots, e)
	}
	for _, evs := range conflicted {
		roots = append(roots, evs...)
	}
	if err := r.g.load(r.ctx, r.fetcher, roots, r.max); err != nil {
		return nil, nil, err
	}
	if err := r.checkStateEntries(unconflicted, conflicted); err != nil {
		return nil, nil, err
	}
	roomID, err := r.roomID()
	if err != nil {
		return nil, nil, err
	}
	r.create = -1
	if r.version.RoomIDIsCreateEventID() {
		if err := r.loadCreate(roomID); err != nil {
			return nil, nil, err
		}
		// The room ID names the one create event: a state set holding
		// another is about another room.
		if r.create >= 0 {
			want := r.g.nodes[r.create].id
			if e, ok := unconflicted[createKey]; ok && e != want {
				return nil, nil, fmt.Errorf("%w: create event %s is not the room's %s", ErrRoomMismatch, e, want)
			}
			for _, e := range conflicted[createKey] {
				if e != want {
					return nil, nil, fmt.Errorf("%w: create event %s is not the room's %s", ErrRoomMismatch, e, want)
				}
			}
		}
	}
	order, err := r.g.topoOrder()
	if err != nil {
		return nil, nil, err
	}
	inConflict := make([]bool, len(r.g.nodes))
	for _, evs := range conflicted {
		for _, e := range evs {
			inConflict[r.g.index[e]] = true
		}
	}
	full := r.authDifference(sets, order)
	for i, c := range inConflict {
		if c {
			full[i] = true
		}
	}
	if r.v21 {
		r.addConflictedSubgraph(full, inConflict, order)
	}
	return full, order, nil
}

// checkStateEntries makes sure each state entry names a state event of its
// own type and state key, and never a rejected one.
func (r *resolution) checkStateEntries(unconflicted StateMap, conflicted map[StateKey][]id.EventID) error {
	check := func(k StateKey, e id.EventID) error {
		nd := &r.g.nodes[r.g.index[e]]
		if nd.key != k {
			return fmt.Errorf("%w: %s is not %s/%s", ErrBadStateEntry, e, k.Type, k.StateKey)
		}
		if nd.ev.InternalMeta.Rejected {
			return fmt.Errorf("%w: %s", ErrRejectedInState, e)
		}
		return nil
	}
	for k, e := range unconflicted {
		if err := check(k, e); err != nil {
			return err
		}
	}
	for k, evs := range conflicted {
		for _, e := range evs {
			if err := check(k, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// roomID returns the one room ID all loaded events carry. In room version
// 12 the create event has none (its ID is the room's), so it is skipped.
func (r *resolution) roomID() (id.RoomID, error) {
	var room id.RoomID
	for i := range r.g.nodes {
		ev := r.g.nodes[i].ev
		if r.version.RoomIDIsCreateEventID() && ev.Type == event.StateCreate.Type {
			continue
		}
		if room == "" {
			room = ev.RoomID
		} else if ev.RoomID != room {
			return "", fmt.Errorf("%w: %s and %s", ErrRoomMismatch, room, ev.RoomID)
		}
	}
	return room, nil
}

// loadCreate finds the room version 12 create event through the room ID and
// reads the room's creators from it.
func (r *resolution) loadCreate(roomID id.RoomID) error {
	if len(roomID) < 2 || roomID[0] != '!' {
		// Only a create event was loaded: nothing cites the room ID.
		for i := range r.g.nodes {
			if r.g.nodes[i].key == createKey {
				r.create = int32(i)
				break
			}
		}
	} else {
		createID := id.EventID("$" + string(roomID[1:]))
		if err := r.g.load(r.ctx, r.fetcher, []id.EventID{createID}, r.max); err != nil {
			return err
		}
		r.create = r.g.index[createID]
		if r.g.nodes[r.create].key != createKey {
			return fmt.Errorf("%w: room ID %s does not name a create event", ErrBadStateEntry, roomID)
		}
	}
	r.creators = map[id.UserID]struct{}{}
	if r.create < 0 {
		return nil
	}
	ce := r.g.nodes[r.create].ev
	r.creators[ce.Sender] = struct{}{}
	for _, u := range gjsonStrings(ce.Content, "additional_creators") {
		r.creators[id.UserID(u)] = struct{}{}
	}
	return nil
}

// authDifference marks the events that are in the full auth chain of some
// state sets but not of all. Following Synapse, a set's full auth chain
// includes the set's own events (see the package documentation). One bit
// per state set is propagated from each event to its auth events, latest
// events first, so the cost is linear in the graph for any number of sets.
func (r *resolution) authDifference(sets []StateMap, order []int32) []bool {
	n := len(r.g.nodes)
	words := (len(sets) + 63) / 64
	reach := make([]uint64, n*words)
	for si, s := range sets {
		w, b := si/64, uint64(1)<<(si%64)
		for _, e := range s {
			reach[int(r.g.index[e])*words+w] |= b
		}
	}
	for i := len(order) - 1; i >= 0; i-- {
		v := int(order[i])
		mine := reach[v*words : (v+1)*words]
		for _, a := range r.g.nodes[v].auth {
			theirs := reach[int(a)*words : (int(a)+1)*words]
			for w := range theirs {
				theirs[w] |= mine[w]
			}
		}
	}
	diff := make([]bool, n)
	for v := range n {
		count := 0
		for _, x := range reach[v*words : (v+1)*words] {
			count += bits.OnesCount64(x)
		}
		diff[v] = count > 0 && count < len(sets)
	}
	return diff
}

// addConflictedSubgraph adds to full the events that lie on an auth_events
// path from one conflicted event to another (room version 12): those
// reachable from a conflicted event that can themselves reach one.
func (r *resolution) addConflictedSubgraph(full, inConflict []bool, order []int32) {
	n := len(r.g.nodes)
	below := make([]bool, n) // in the auth chain of a conflicted event
	for i := len(order) - 1; i >= 0; i-- {
		v := order[i]
		if inConflict[v] || below[v] {
			for _, a := range r.g.nodes[v].auth {
				below[a] = true
			}
		}
	}
	above := make([]bool, n) // has a conflicted event in its auth chain
	for _, v := range order {
		for _, a := range r.g.nodes[v].auth {
			if inConflict[a] || above[a] {
				above[v] = true
				break
			}
		}
	}
	for v := range n {
		if below[v] && above[v] {
			full[v] = true
		}
	}
}

// powerSet returns the set X of step 1: the power events of the full
// conflicted set, and the events of their auth chains that are in it.
func (r *resolution) powerSet(full []bool, order []int32) []bool {
	n := len(r.g.nodes)
	inChain := make([]bool, n)
	for i := len(order) - 1; i >= 0; i-- {
		v := order[i]
		if (full[v] && r.g.nodes[v].power) || inChain[v] {
			for _, a := range r.g.nodes[v].auth {
				inChain[a] = true
			}
		}
	}
	x := make([]bool, n)
	for v := range n {
		x[v] = full[v] && (r.g.nodes[v].power || inChain[v])
	}
	return x
}
