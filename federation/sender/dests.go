package sender

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/eimis-hub/eimis/internal/bus"
)

// groupCacheMax bounds the cache of joined servers per state group. State
// groups never change once written, so entries never go stale; the bound
// only caps memory.
const groupCacheMax = 4096

// destResolver finds an event's destinations: the servers with a member
// joined in the room state just before or just after the event (so a
// leaving server gets its leave and a joining one its join), plus the
// server of a membership event's target (an invitee's server gets its
// invite, a rescinded invite its leave), never this server.
//
// Health data: a server is a destination only when the store says one of
// its users was joined at the event. A member whose membership event
// cannot be read is left out (the server can still fetch the event later
// if it really is in the room), never guessed in.
type destResolver struct {
	st   RoomState
	self string

	mu     sync.Mutex
	groups map[int64][]string
}

func newDestResolver(st RoomState, self string) *destResolver {
	return &destResolver{st: st, self: self, groups: map[int64][]string{}}
}

// forEvent returns the event's destinations (sorted) and its PDU.
func (r *destResolver) forEvent(ctx context.Context, ev bus.EventMsg) ([]string, json.RawMessage, error) {
	e, err := r.st.EventByID(ctx, ev.EventID)
	if err != nil {
		return nil, nil, err
	}
	if e.Flags != 0 {
		// Only events of the DAG leave the hub.
		return nil, nil, nil
	}
	pdu := json.RawMessage(ev.Data)
	if len(pdu) == 0 {
		pdu = e.JSON
	}
	set := map[string]bool{}
	var groups []int64
	for _, g := range []int64{e.StateBefore, e.StateAfter} {
		if g != 0 && (len(groups) == 0 || groups[0] != g) {
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		// Events stored before state groups existed: the room's current
		// members are the best answer there is.
		ms, err := r.st.RoomMembers(ctx, e.RoomID, "join")
		if err != nil {
			return nil, nil, fmt.Errorf("members of %s: %w", e.RoomID, err)
		}
		for _, m := range ms {
			set[serverOf(m.UserID)] = true
		}
	}
	for _, g := range groups {
		servers, err := r.joinedServers(ctx, e.RoomID, g)
		if err != nil {
			return nil, nil, err
		}
		for _, s := range servers {
			set[s] = true
		}
	}
	if e.Type == "m.room.member" && e.StateKey != nil {
		set[serverOf(*e.StateKey)] = true
	}
	delete(set, r.self)
	delete(set, "")
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, pdu, nil
}

// joinedServers returns the servers with a joined member in a state group.
func (r *destResolver) joinedServers(ctx context.Context, roomID string, group int64) ([]string, error) {
	r.mu.Lock()
	servers, ok := r.groups[group]
	r.mu.Unlock()
	if ok {
		return servers, nil
	}
	state, err := r.st.StateGroup(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("state group %d: %w", group, err)
	}
	// Most member entries of the group are the room's current ones: their
	// membership is known without reading the events.
	cur, err := r.st.RoomMembers(ctx, roomID, "")
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", roomID, err)
	}
	known := make(map[string]string, len(cur)) // event ID -> membership
	for _, m := range cur {
		known[m.EventID] = m.Membership
	}
	set := map[string]bool{}
	var need []string
	for k, id := range state {
		if k.Type != "m.room.member" {
			continue
		}
		if ms, ok := known[id]; ok {
			if ms == "join" {
				set[serverOf(k.StateKey)] = true
			}
			continue
		}
		need = append(need, id)
	}
	if len(need) > 0 {
		evs, err := r.st.EventsByID(ctx, need)
		if err != nil {
			return nil, fmt.Errorf("member events of %s: %w", roomID, err)
		}
		for _, e := range evs {
			if e.Membership == "join" && e.StateKey != nil {
				set[serverOf(*e.StateKey)] = true
			}
		}
	}
	servers = make([]string, 0, len(set))
	for s := range set {
		if s != "" {
			servers = append(servers, s)
		}
	}
	sort.Strings(servers)
	r.mu.Lock()
	if len(r.groups) >= groupCacheMax {
		clear(r.groups)
	}
	r.groups[group] = servers
	r.mu.Unlock()
	return servers, nil
}
