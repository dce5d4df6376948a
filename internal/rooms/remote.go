package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

// What the federation room side needs from the room server beyond the
// inbound pipeline: outliers, joining a room that lives elsewhere, event
// templates for make_join/make_leave, and events built and signed here
// but committed only after a peer answered (invites).

// ErrNotInRoom is a room this server knows but has no state of (it was
// only invited), or a user who cannot take the asked membership.
var ErrNotInRoom = errors.New("rooms: this server is not in the room")

// CheckRemote runs the inbound pipeline's format and signature steps on
// an event of a room of the given version that may not be stored yet.
func (s *Server) CheckRemote(raw json.RawMessage, version id.RoomVersion) (id.EventID, *pdu.PDU, error) {
	in, err := checkFormatVersion(raw, version)
	if err != nil {
		return "", nil, err
	}
	if err := s.checkSignatures(in); err != nil {
		return in.id, nil, err
	}
	return in.id, in.pdu, nil
}

// OutlierResult is what StoreOutliers did with each event, by event ID:
// Accepted (stored as an outlier), Rejected (stored as a rejected
// outlier), Duplicate, or an error (dropped).
type OutlierResult struct {
	Outcome map[id.EventID]Outcome
	Dropped map[id.EventID]error
}

// StoreOutliers keeps events whose place in the DAG is unknown (auth
// chains, state from send_join or state_ids): each is format- and
// signature-checked, then, lowest depth first, authorised against its own
// auth events (which must be among them or stored), and stored with the
// outlier flag. They never take a live position nor reach a timeline.
// The room must be stored (see JoinRemote for a room being joined).
func (s *Server) StoreOutliers(ctx context.Context, roomID id.RoomID, version id.RoomVersion, raws []json.RawMessage) (*OutlierResult, error) {
	res := &OutlierResult{Outcome: map[id.EventID]Outcome{}, Dropped: map[id.EventID]error{}}
	ins := s.checkAll(roomID, version, raws, res)
	_, err := s.submit(ctx, func(b *batch) (*Result, error) {
		if _, err := b.room(string(roomID)); err != nil {
			return nil, err
		}
		return nil, b.storeOutliers(string(roomID), ins, res)
	})
	return res, err
}

func (s *Server) checkAll(roomID id.RoomID, version id.RoomVersion, raws []json.RawMessage, res *OutlierResult) []*inbound {
	var ins []*inbound
	seen := map[id.EventID]bool{}
	for _, raw := range raws {
		in, err := checkFormatVersion(raw, version)
		if err == nil && in.room != roomID {
			err = fmt.Errorf("%w: event of room %s", ErrBadPDU, in.room)
		}
		if err == nil {
			err = s.checkSignatures(in)
		}
		if err != nil {
			if in != nil {
				res.Dropped[in.id] = err
			} else {
				res.Dropped[id.EventID(fmt.Sprintf("#%d", len(res.Dropped)))] = err
			}
			continue
		}
		if !seen[in.id] {
			seen[in.id] = true
			ins = append(ins, in)
		}
	}
	sort.SliceStable(ins, func(i, j int) bool { return ins[i].pdu.Depth < ins[j].pdu.Depth })
	return ins
}

// storeOutliers writes checked events as outliers. Events are authorised
// lowest depth first; one whose auth events are missing is dropped (it is
// not an opError: earlier events may already be written).
func (b *batch) storeOutliers(roomID string, ins []*inbound, res *OutlierResult) error {
	for _, in := range ins {
		known, err := b.tx.EventsByIDAny(b.ctx, []string{string(in.id)})
		if err != nil {
			return err
		}
		if len(known) > 0 {
			res.Outcome[in.id] = Duplicate
			continue
		}
		raw, err := marshalPDU(in.pdu)
		if err != nil {
			res.Dropped[in.id] = fmt.Errorf("%w: %w", ErrBadPDU, err)
			continue
		}
		ok, err := b.checkAuthEvents(roomID, in)
		if err != nil {
			if isOpError(err) {
				res.Dropped[in.id] = err
				continue
			}
			return err
		}
		ev := storedEvent(in, raw)
		ev.Flags = store.FlagOutlier
		res.Outcome[in.id] = Accepted
		if !ok {
			ev.Flags |= store.FlagRejected
			res.Outcome[in.id] = Rejected
		}
		if _, err := b.tx.InsertEvent(b.ctx, store.NewEvent{Event: ev}); err != nil {
			return err
		}
	}
	return nil
}

// RemoteJoin is a join to a room that lives on other servers, as a
// resident server's send_join answered it.
type RemoteJoin struct {
	RoomID  id.RoomID
	Version id.RoomVersion
	// Event is the join event, signed by this server (and perhaps by the
	// resident server).
	Event     json.RawMessage
	State     []json.RawMessage
	AuthChain []json.RawMessage
}

// JoinRemote stores a remote room this server joins: the auth chain and
// the state as outliers, then the join event in the DAG with the state
// before it taken from the answer (its prev_events stay unknown), which
// becomes the room's current state with the join applied. The join
// itself must be authorised by that state. A room known only from an
// invite is completed the same way.
func (s *Server) JoinRemote(ctx context.Context, j RemoteJoin) (*Received, error) {
	in, err := checkFormatVersion(j.Event, j.Version)
	if err != nil {
		return nil, err
	}
	if in.room != j.RoomID {
		return nil, fmt.Errorf("%w: join event of room %s, not %s", ErrBadPDU, in.room, j.RoomID)
	}
	if err := s.checkSignatures(in); err != nil {
		return nil, err
	}
	res := &OutlierResult{Outcome: map[id.EventID]Outcome{}, Dropped: map[id.EventID]error{}}
	ins := s.checkAll(j.RoomID, j.Version, append(append([]json.RawMessage{}, j.AuthChain...), j.State...), res)
	stateIDs := map[id.EventID]bool{}
	for _, raw := range j.State {
		if p, err := ParsePDU(raw); err == nil {
			if evID, err := p.GetEventID(j.Version); err == nil {
				stateIDs[evID] = true
			}
		}
	}
	var out Received
	_, err = s.submit(ctx, func(b *batch) (*Result, error) {
		creator := ""
		for _, x := range ins {
			if x.pdu.Type == event.StateCreate.Type {
				creator = string(x.pdu.Sender)
			}
		}
		err := b.tx.CreateRoom(b.ctx, store.Room{RoomID: string(j.RoomID), Version: string(j.Version), Creator: creator, CreatedAt: time.Now()})
		if err != nil && !errors.Is(err, store.ErrExists) {
			return nil, err
		}
		if errors.Is(err, store.ErrExists) {
			head, err := b.tx.GetRoom(b.ctx, string(j.RoomID))
			if err != nil {
				return nil, err
			}
			if head.Version != string(j.Version) {
				return nil, fail(ErrBadEvent, "room %s is version %s here, not %s", j.RoomID, head.Version, j.Version)
			}
		}
		if err := b.storeOutliers(string(j.RoomID), ins, res); err != nil {
			return nil, err
		}
		// The state before the join: the answer's state events that are
		// stored and not rejected.
		ids := make([]string, 0, len(stateIDs))
		for evID := range stateIDs {
			ids = append(ids, string(evID))
		}
		evs, err := b.tx.EventsByIDAny(b.ctx, ids)
		if err != nil {
			return nil, err
		}
		before := store.StateMap{}
		for _, e := range evs {
			if e.StateKey == nil || e.Flags&store.FlagRejected != 0 || e.RoomID != string(j.RoomID) {
				continue
			}
			before[store.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e.EventID
		}
		if _, ok := before[store.StateKey{Type: event.StateCreate.Type}]; !ok {
			return nil, fmt.Errorf("%w: the resident server's state has no create event (dropped: %v)", ErrBadEvent, res.Dropped)
		}
		delete(b.heads, string(j.RoomID))
		delete(b.s.cache, string(j.RoomID))
		rs, err := b.room(string(j.RoomID))
		if err != nil {
			return nil, err
		}
		known, err := b.tx.EventsByIDAny(b.ctx, []string{string(in.id)})
		if err != nil {
			return nil, err
		}
		if len(known) > 0 && known[0].Flags == 0 {
			out = Received{EventID: in.id, Outcome: Duplicate}
			return &Result{EventID: in.id, RoomID: in.room}, nil
		}
		if len(known) > 0 {
			return nil, fmt.Errorf("%w: the join event is stored already as %d", ErrBadEvent, known[0].Flags)
		}
		raw, err := marshalPDU(in.pdu)
		if err != nil {
			return nil, err
		}
		pl, err := b.placeEvent(rs, in.pdu, in.id, raw, placeOpts{before: before})
		if err != nil {
			return nil, err
		}
		out = Received{EventID: in.id, Outcome: outcomeOf(pl.Flags), Pos: pl.Pos}
		return &Result{EventID: in.id, RoomID: in.room}, nil
	})
	if err != nil {
		return nil, err
	}
	if out.Outcome == Rejected || out.Outcome == SoftFailed {
		return &out, fmt.Errorf("%w: the join was %s against the resident server's state", ErrForbidden, out.Outcome)
	}
	return &out, nil
}

// StoreStub stores a membership event of a room this server is not in (an
// invite of a local user from another server, or the leave that declines
// it): live, so /sync shows it to the user, with no state group (it
// resolves nothing), creating the room's row if needed. The room's
// current state for that user becomes the event.
func (s *Server) StoreStub(ctx context.Context, version id.RoomVersion, raw json.RawMessage) (*Received, error) {
	in, err := checkFormatVersion(raw, version)
	if err != nil {
		return nil, err
	}
	if in.pdu.Type != event.StateMember.Type || in.pdu.StateKey == nil {
		return nil, fmt.Errorf("%w: a stub is a membership event", ErrBadPDU)
	}
	if err := s.checkSignatures(in); err != nil {
		return nil, err
	}
	var out Received
	_, err = s.submit(ctx, func(b *batch) (*Result, error) {
		known, err := b.tx.EventsByIDAny(b.ctx, []string{string(in.id)})
		if err != nil {
			return nil, err
		}
		if len(known) > 0 {
			out = Received{EventID: in.id, Outcome: Duplicate}
			return &Result{EventID: in.id, RoomID: in.room}, nil
		}
		head, err := b.tx.GetRoom(b.ctx, string(in.room))
		switch {
		case errors.Is(err, store.ErrNotFound):
			if err := b.tx.CreateRoom(b.ctx, store.Room{RoomID: string(in.room), Version: string(version), CreatedAt: time.Now()}); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, err
		case head.StateGroup != 0:
			// This server is in the room: the event goes through the DAG.
			return nil, fail(ErrBadEvent, "room %s is joined here; the event must be received", in.room)
		}
		raw, err := marshalPDU(in.pdu)
		if err != nil {
			return nil, opError{fmt.Errorf("%w: %w", ErrBadPDU, err)}
		}
		ev := storedEvent(in, raw)
		pos, err := b.tx.InsertEvent(b.ctx, store.NewEvent{Event: ev, PrevEvents: eventIDs(in.pdu.PrevEvents)})
		if err != nil {
			return nil, err
		}
		ev.Pos = pos
		b.created = append(b.created, ev)
		delete(b.s.cache, string(in.room))
		out = Received{EventID: in.id, Outcome: Accepted, Pos: pos}
		return &Result{EventID: in.id, RoomID: in.room}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Template is an unsigned event built on a room's current state for a
// remote user (make_join, make_leave): the resident server's answer.
type Template struct {
	Version id.RoomVersion
	Event   *pdu.PDU
}

// MakeMembership builds the template of a membership event of user (on
// another server) in roomID, authorised against current state as it
// would be once signed. Nothing is stored.
func (s *Server) MakeMembership(ctx context.Context, roomID id.RoomID, user id.UserID, membership event.Membership) (*Template, error) {
	var out *Template
	_, err := s.submit(ctx, func(b *batch) (*Result, error) {
		rs, err := b.room(string(roomID))
		if err != nil {
			return nil, err
		}
		if _, ok := rs.state[pdu.StateKey{Type: event.StateCreate.Type}]; !ok {
			return nil, fail(ErrNotInRoom, "%s", roomID)
		}
		sk := string(user)
		content, _ := json.Marshal(map[string]any{"membership": membership})
		p := &pdu.PDU{
			Type: event.StateMember.Type, StateKey: &sk, Sender: user, Content: content,
			OriginServerTS: time.Now().UnixMilli(), RoomID: rs.roomID, AuthEvents: []id.EventID{},
		}
		p.PrevEvents, p.Depth = rs.prevEvents()
		var auth []*pdu.PDU
		for _, k := range p.AuthEventSelection(rs.version) {
			if e, ok := rs.state[k]; ok {
				p.AuthEvents = append(p.AuthEvents, e.id)
				auth = append(auth, e.pdu)
			}
		}
		if auth == nil {
			auth = []*pdu.PDU{}
		}
		if err := eventauth.Authorize(rs.version, p, auth, rs.getEvents, b.s.getKey); err != nil {
			return nil, fail(ErrForbidden, "%s", err.Error())
		}
		out = &Template{Version: rs.version, Event: p}
		return nil, nil
	})
	return out, err
}

// SignTemplate completes a template a resident server made (make_join,
// make_leave) for a local user: it must be the asked membership of that
// user, and gets this server's hashes and signature.
func (s *Server) SignTemplate(version id.RoomVersion, tmpl json.RawMessage, user id.UserID, membership event.Membership) (json.RawMessage, id.EventID, error) {
	if !IsSupported(version) {
		return nil, "", fmt.Errorf("%w: %s", ErrUnsupportedRoomVersion, version)
	}
	p, err := ParsePDU(tmpl)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadPDU, err)
	}
	if p.Type != event.StateMember.Type || p.StateKey == nil || *p.StateKey != string(user) || p.Sender != user ||
		membershipOf(p) != string(membership) {
		return nil, "", fmt.Errorf("%w: the template is not %s's %s", ErrBadPDU, user, membership)
	}
	p.OriginServerTS = time.Now().UnixMilli()
	p.Signatures, p.Hashes, p.Unsigned = nil, nil, nil
	return s.signPDU(version, p)
}

func (s *Server) signPDU(version id.RoomVersion, p *pdu.PDU) (json.RawMessage, id.EventID, error) {
	if err := p.Sign(version, s.cfg.ServerName, id.KeyID(s.cfg.Key.ID), s.cfg.Key.Private); err != nil {
		return nil, "", fmt.Errorf("%w: sign: %w", ErrBadEvent, err)
	}
	evID, err := p.GetEventID(version)
	if err != nil {
		return nil, "", fmt.Errorf("%w: event ID: %w", ErrBadEvent, err)
	}
	raw, err := marshalPDU(p)
	if err != nil {
		return nil, "", err
	}
	return raw, evID, nil
}

// CountersignInvite adds this server's signature to an invite of a local
// user built by another server (the invitee's server signs, as the
// /invite endpoint asks). The event's ID does not change.
func (s *Server) CountersignInvite(version id.RoomVersion, raw json.RawMessage) (json.RawMessage, id.EventID, error) {
	in, err := checkFormatVersion(raw, version)
	if err != nil {
		return nil, "", err
	}
	if err := s.checkSignatures(in); err != nil {
		return nil, "", err
	}
	if in.pdu.Type != event.StateMember.Type || in.pdu.StateKey == nil || membershipOf(in.pdu) != "invite" {
		return nil, "", fmt.Errorf("%w: not an invite", ErrBadPDU)
	}
	if _, hs, err := id.UserID(*in.pdu.StateKey).Parse(); err != nil || hs != s.cfg.ServerName {
		return nil, "", fmt.Errorf("%w: the invitee is not a user of this server", ErrBadPDU)
	}
	if err := in.pdu.Sign(version, s.cfg.ServerName, id.KeyID(s.cfg.Key.ID), s.cfg.Key.Private); err != nil {
		return nil, "", fmt.Errorf("%w: sign: %w", ErrBadEvent, err)
	}
	out, err := marshalPDU(in.pdu)
	if err != nil {
		return nil, "", err
	}
	return out, in.id, nil
}

// Built is an event built and signed on a room's current state but not
// stored: an invite of a remote user, committed with Receive once the
// invitee's server countersigned it.
type Built struct {
	Version id.RoomVersion
	EventID id.EventID
	Event   json.RawMessage
	// InviteState is the stripped state an invitee's server shows.
	InviteState []StrippedState
}

// Build builds, signs and authorises req's event without storing it.
func (s *Server) Build(ctx context.Context, req Submit) (*Built, error) {
	if err := checkSubmit(req); err != nil {
		return nil, err
	}
	var out *Built
	_, err := s.submit(ctx, func(b *batch) (*Result, error) {
		rs, err := b.room(string(req.RoomID))
		if err != nil {
			return nil, err
		}
		p, evID, err := rs.build(b.s.cfg, req)
		if err != nil {
			return nil, err
		}
		raw, err := marshalPDU(p)
		if err != nil {
			return nil, opError{fmt.Errorf("%w: %w", ErrBadEvent, err)}
		}
		var state []store.Event
		for k, e := range rs.state {
			if !strippedTypes[k.Type] {
				continue
			}
			sk := k.StateKey
			pj, _ := marshalPDU(e.pdu)
			state = append(state, store.Event{EventID: string(e.id), Type: k.Type, StateKey: &sk, JSON: pj})
		}
		stripped, err := InviteState(state, "")
		if err != nil {
			return nil, opError{err}
		}
		out = &Built{Version: rs.version, EventID: evID, Event: raw, InviteState: stripped}
		return nil, nil
	})
	return out, err
}
