package rooms

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/stateres"
	"github.com/eimis-hub/eimis/internal/store"
)

// The room DAG: placing an event that does not simply extend the room's
// current state (a remote event, a fork) and keeping current state the
// resolved state of the forward extremities.

// ErrMissingPrev is an event whose prev_events are not all known members
// of the DAG (unknown, outliers or rejected): the caller must fetch them,
// or keep the event as an outlier.
var ErrMissingPrev = errors.New("rooms: prev_events not in the room's DAG")

// fetcher serves state resolution from the transaction: every stored
// event, rejected ones marked.
func (b *batch) fetcher() stateres.EventFetcher {
	return stateres.FetcherFunc(func(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error) {
		evs, err := b.tx.EventsByIDAny(ctx, eventIDs(ids))
		if err != nil {
			return nil, err
		}
		out := make(map[id.EventID]*pdu.PDU, len(evs))
		for _, e := range evs {
			p, err := ParsePDU(e.JSON)
			if err != nil {
				return nil, fmt.Errorf("event %s: %w", e.EventID, err)
			}
			p.InternalMeta.EventID = id.EventID(e.EventID)
			p.InternalMeta.Rejected = e.Flags&store.FlagRejected != 0
			out[id.EventID(e.EventID)] = p
		}
		return out, nil
	})
}

func toResolver(m store.StateMap) stateres.StateMap {
	out := make(stateres.StateMap, len(m))
	for k, v := range m {
		out[pdu.StateKey{Type: k.Type, StateKey: k.StateKey}] = id.EventID(v)
	}
	return out
}

func fromResolver(m stateres.StateMap) store.StateMap {
	out := make(store.StateMap, len(m))
	for k, v := range m {
		out[store.StateKey{Type: k.Type, StateKey: k.StateKey}] = string(v)
	}
	return out
}

// resolveGroups returns the resolved state of groups and a group that
// holds it: the group itself when there is one, else a new delta against
// the first.
func (b *batch) resolveGroups(version id.RoomVersion, roomID string, groups []int64) (store.StateMap, int64, error) {
	var uniq []int64
	for _, g := range groups {
		if !containsGroup(uniq, g) {
			uniq = append(uniq, g)
		}
	}
	if len(uniq) == 0 {
		return store.StateMap{}, 0, nil
	}
	sets := make([]store.StateMap, len(uniq))
	in := make([]stateres.StateMap, len(uniq))
	for i, g := range uniq {
		m, err := b.tx.StateGroup(b.ctx, g)
		if err != nil {
			return nil, 0, err
		}
		sets[i], in[i] = m, toResolver(m)
	}
	if len(uniq) == 1 {
		return sets[0], uniq[0], nil
	}
	res, err := stateres.Resolve(b.ctx, version, in, b.fetcher())
	if err != nil {
		return nil, 0, fmt.Errorf("resolve state: %w", err)
	}
	resolved := fromResolver(res)
	g, err := b.tx.NewStateGroup(b.ctx, roomID, uniq[0], store.Diff(sets[0], resolved))
	if err != nil {
		return nil, 0, err
	}
	return resolved, g, nil
}

func containsGroup(gs []int64, g int64) bool {
	for _, v := range gs {
		if v == g {
			return true
		}
	}
	return false
}

// authEvents is how the auth rules fetch further events (a restricted
// join's authorising member, …): from this transaction, any flag.
func (b *batch) authEvents(ids []id.EventID) ([]*pdu.PDU, error) {
	m, err := b.fetcher().Events(b.ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*pdu.PDU, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	return out, nil
}

// authorize checks p against the auth rules with its auth events taken
// from state (the spec's "auth against the state before it" and "against
// current state" checks).
func (b *batch) authorize(version id.RoomVersion, p *pdu.PDU, state store.StateMap) error {
	var want []string
	for _, k := range p.AuthEventSelection(version) {
		if ev, ok := state[store.StateKey{Type: k.Type, StateKey: k.StateKey}]; ok {
			want = append(want, ev)
		}
	}
	byID, err := b.fetcher().Events(b.ctx, toIDs(want))
	if err != nil {
		return err
	}
	auth := make([]*pdu.PDU, 0, len(byID))
	for _, ev := range want {
		if p, ok := byID[id.EventID(ev)]; ok {
			auth = append(auth, p)
		}
	}
	return eventauth.Authorize(version, p, auth, b.authEvents, b.s.getKey)
}

func toIDs(ss []string) []id.EventID {
	out := make([]id.EventID, len(ss))
	for i, s := range ss {
		out[i] = id.EventID(s)
	}
	return out
}

// placeOpts tell placeEvent where the state before an event comes from
// when its prev_events are not all in the DAG.
type placeOpts struct {
	// before, when set, is the state before the event (a join's, from
	// the resident server's send_join answer).
	before store.StateMap
	// prevStates is the state after each prev_event that is not in the
	// DAG, as fetched from a peer (state_ids); its events must be stored.
	prevStates map[id.EventID]store.StateMap
	// promote: the event is stored as an outlier; it takes its place in
	// the DAG as history (its position, the extremities and current state
	// stay), and is not soft-failed against current state.
	promote bool
}

// store writes a placed event: a new row, or an outlier promoted.
func (b *batch) storeEvent(ne store.NewEvent, opt placeOpts) (int64, error) {
	if !opt.promote {
		return b.tx.InsertEvent(b.ctx, ne)
	}
	if err := b.tx.PromoteOutlier(b.ctx, ne); err != nil {
		return 0, err
	}
	evs, err := b.tx.EventsByIDAny(b.ctx, []string{ne.EventID})
	if err != nil || len(evs) != 1 {
		return 0, fmt.Errorf("promoted outlier %s: %w", ne.EventID, err)
	}
	return evs[0].Pos, nil
}

// prevGroups returns the state groups after p's prev_events: from the DAG,
// or made from opt's fetched states for those that are not in it.
func (b *batch) prevGroups(roomID string, p *pdu.PDU, given map[id.EventID]store.StateMap) ([]int64, error) {
	prevs, err := b.tx.EventsByIDAny(b.ctx, eventIDs(p.PrevEvents))
	if err != nil {
		return nil, err
	}
	inDAG := map[id.EventID]*store.Event{}
	for i, e := range prevs {
		if e.Flags&(store.FlagOutlier|store.FlagRejected) == 0 && e.StateAfter != 0 && e.RoomID == roomID {
			inDAG[id.EventID(e.EventID)] = &prevs[i]
		}
	}
	if len(p.PrevEvents) == 0 {
		return nil, opError{fmt.Errorf("%w: no prev_events", ErrMissingPrev)}
	}
	for _, prev := range p.PrevEvents {
		if _, ok := inDAG[prev]; !ok && given[prev] == nil {
			// Checked before anything is written: an opError must not
			// follow a write.
			return nil, opError{fmt.Errorf("%w: %s", ErrMissingPrev, prev)}
		}
	}
	groups := make([]int64, 0, len(p.PrevEvents))
	for _, prev := range p.PrevEvents {
		if e, ok := inDAG[prev]; ok {
			groups = append(groups, e.StateAfter)
			continue
		}
		g, err := b.tx.NewStateGroup(b.ctx, roomID, 0, given[prev])
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// placed is what placeEvent did with an event.
type placed struct {
	Flags store.EventFlags
	Pos   int64
}

// placeEvent stores p, an already validated event of rs's room whose
// prev_events are all in the DAG, at its place in the DAG: the state
// before it is the resolution of its prev_events' states; it is rejected
// if that state does not authorise it and soft-failed if current state
// does not; otherwise it joins the forward extremities and current state
// becomes the resolved state of the new extremities. The room's cached
// state is dropped when current state changed in any other way than by
// appending p.
func (b *batch) placeEvent(rs *roomState, p *pdu.PDU, evID id.EventID, raw []byte, opt placeOpts) (placed, error) {
	roomID := string(rs.roomID)
	var before store.StateMap
	var beforeGroup int64
	var err error
	if opt.before != nil {
		before = opt.before
		if beforeGroup, err = b.tx.NewStateGroup(b.ctx, roomID, 0, before); err != nil {
			return placed{}, err
		}
	} else {
		groups, err := b.prevGroups(roomID, p, opt.prevStates)
		if err != nil {
			return placed{}, err
		}
		if before, beforeGroup, err = b.resolveGroups(rs.version, roomID, groups); err != nil {
			return placed{}, err
		}
	}
	ev := store.Event{
		EventID: string(evID), RoomID: roomID, Type: p.Type, StateKey: p.StateKey,
		Sender: string(p.Sender), Depth: p.Depth, OriginTS: p.OriginServerTS, JSON: raw,
		Membership: membershipOf(p), Door: inboundDoor,
	}
	ne := store.NewEvent{Event: ev, PrevEvents: eventIDs(p.PrevEvents)}
	if err := b.authorize(rs.version, p, before); err != nil {
		ne.Flags = store.FlagRejected
		pos, err := b.storeEvent(ne, opt)
		return placed{Flags: ne.Flags, Pos: pos}, err
	}
	current := stateOf(rs)
	_, hasCreate := current[store.StateKey{Type: event.StateCreate.Type}]
	// A room being joined has no current state yet (or only an invite's
	// stub): there is nothing to soft-fail against.
	if err := b.authorize(rs.version, p, current); hasCreate && !opt.promote && err != nil {
		ne.Flags = store.FlagSoftFailed
	}
	after, afterGroup := before, beforeGroup
	if p.StateKey != nil {
		k := store.StateKey{Type: p.Type, StateKey: *p.StateKey}
		after = store.ApplyDelta(before, store.StateMap{k: string(evID)})
		if afterGroup, err = b.tx.NewStateGroup(b.ctx, roomID, beforeGroup, store.StateMap{k: string(evID)}); err != nil {
			return placed{}, err
		}
	}
	ne.StateBefore, ne.StateAfter = beforeGroup, afterGroup
	pos, err := b.storeEvent(ne, opt)
	if err != nil {
		return placed{}, err
	}
	ev.Pos = pos
	if ne.Flags != 0 || opt.promote {
		return placed{Flags: ne.Flags, Pos: pos}, nil
	}
	b.created = append(b.created, ev)
	// Current state: the resolved state of the new extremities.
	xs, err := b.tx.Extremities(b.ctx, roomID)
	if err != nil {
		return placed{}, err
	}
	cur, curGroup := after, afterGroup
	if len(xs) > 1 || (len(xs) == 1 && xs[0].EventID != string(evID)) {
		ids := make([]string, len(xs))
		for i, x := range xs {
			ids[i] = x.EventID
		}
		tips, err := b.tx.EventsByIDAny(b.ctx, ids)
		if err != nil {
			return placed{}, err
		}
		tipGroups := make([]int64, 0, len(tips))
		for _, t := range tips {
			if t.StateAfter != 0 {
				tipGroups = append(tipGroups, t.StateAfter)
			}
		}
		if cur, curGroup, err = b.resolveGroups(rs.version, roomID, tipGroups); err != nil {
			return placed{}, err
		}
	}
	if err := b.tx.SetCurrentState(b.ctx, roomID, curGroup, cur); err != nil {
		return placed{}, err
	}
	// The cache is rebuilt from the store on the next use.
	delete(b.s.cache, roomID)
	delete(b.touched, roomID)
	delete(b.heads, roomID)
	return placed{Pos: pos}, nil
}

// stateOf is rs's current state as a StateMap.
func stateOf(rs *roomState) store.StateMap {
	out := make(store.StateMap, len(rs.state))
	for k, e := range rs.state {
		out[store.StateKey{Type: k.Type, StateKey: k.StateKey}] = string(e.id)
	}
	return out
}

// place is the entry point for an event built elsewhere (tests today; the
// inbound federation pipeline once it checks format, signatures and
// auth events first): it runs placeEvent in the writer.
func (s *Server) place(ctx context.Context, p *pdu.PDU) (id.EventID, placed, error) {
	var out placed
	var evID id.EventID
	_, err := s.submit(ctx, func(b *batch) (*Result, error) {
		rs, err := b.room(string(p.RoomID))
		if err != nil {
			return nil, err
		}
		if evID, err = p.GetEventID(rs.version); err != nil {
			return nil, opError{fmt.Errorf("%w: event ID: %w", ErrBadEvent, err)}
		}
		raw, err := marshalPDU(p)
		if err != nil {
			return nil, opError{fmt.Errorf("%w: %w", ErrBadEvent, err)}
		}
		if out, err = b.placeEvent(rs, p, evID, raw, placeOpts{}); err != nil {
			return nil, err
		}
		return &Result{EventID: evID, RoomID: p.RoomID}, nil
	})
	return evID, out, err
}
