package rooms

import (
	"bytes"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"fmt"
	"slices"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

// MaxPrevEvents caps the prev_events of a local event: the spec advises
// servers to keep them few, and each send merges up to this many forks.
const MaxPrevEvents = 10

// MaxDepth is the largest depth an event may have (the canonical JSON
// integer limit, 2^53-1).
const MaxDepth = 1<<53 - 1

// roomState is a room's forward extremities and current state as the
// writer sees it.
type roomState struct {
	roomID  id.RoomID
	version id.RoomVersion
	// head is the room row's last event, group its current state group:
	// when either differs from the row, the cache is stale.
	head        id.EventID
	group       int64
	extremities []store.Extremity // highest depth first
	state       map[pdu.StateKey]stateEntry
}

type stateEntry struct {
	id  id.EventID
	pdu *pdu.PDU
}

func newRoomState(roomID id.RoomID, version id.RoomVersion) *roomState {
	return &roomState{roomID: roomID, version: version, state: map[pdu.StateKey]stateEntry{}}
}

func loadRoomState(head *store.Room, extremities []store.Extremity, evs []store.Event) (*roomState, error) {
	rs := newRoomState(id.RoomID(head.RoomID), id.RoomVersion(head.Version))
	rs.head = id.EventID(head.LastEventID)
	rs.group = head.StateGroup
	rs.extremities = extremities
	for _, e := range evs {
		p, err := ParsePDU(e.JSON)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", e.EventID, err)
		}
		if p.StateKey == nil {
			continue
		}
		rs.state[pdu.StateKey{Type: p.Type, StateKey: *p.StateKey}] = stateEntry{id: id.EventID(e.EventID), pdu: p}
	}
	return rs, nil
}

// ParsePDU decodes a stored PDU.
func ParsePDU(raw []byte) (*pdu.PDU, error) {
	var p pdu.PDU
	if err := jsonv2.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("parse PDU: %w", err)
	}
	return &p, nil
}

func marshalPDU(p *pdu.PDU) ([]byte, error) {
	raw, err := jsonv2.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("marshal PDU: %w", err)
	}
	return raw, nil
}

func membershipOf(p *pdu.PDU) string {
	if p.Type != event.StateMember.Type || p.StateKey == nil {
		return ""
	}
	return gjson.GetBytes(p.Content, "membership").Str
}

// validContent checks that content is one JSON object.
func validContent(raw json.RawMessage) (jsontext.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return jsontext.Value("{}"), nil
	}
	if raw[0] != '{' || !json.Valid(raw) {
		return nil, fail(ErrBadEvent, "content must be a JSON object")
	}
	return jsontext.Value(raw), nil
}

// prevEvents picks a local event's prev_events (at most MaxPrevEvents of
// the forward extremities, highest depth first) and its depth.
func (rs *roomState) prevEvents() ([]id.EventID, int64) {
	prev := make([]id.EventID, 0, min(len(rs.extremities), MaxPrevEvents))
	var depth int64
	for i, x := range rs.extremities {
		if i == MaxPrevEvents {
			break
		}
		prev = append(prev, id.EventID(x.EventID))
		depth = max(depth, x.Depth)
	}
	return prev, min(depth+1, MaxDepth)
}

// build makes the next event of the room for req: linked to the room's
// forward extremities (so it merges forks), with the auth events the selection algorithm
// asks for, hashed, signed and then checked against the auth rules.
func (rs *roomState) build(cfg Config, req Submit) (*pdu.PDU, id.EventID, error) {
	content, err := validContent(req.Content)
	if err != nil {
		return nil, "", err
	}
	if content, err = admit(cfg.Gate, req, content); err != nil {
		return nil, "", err
	}
	if req.Type == "" || len(req.Type) > 255 {
		return nil, "", fail(ErrBadEvent, "event type must be 1..255 bytes")
	}
	if req.StateKey != nil && len(*req.StateKey) > 255 {
		return nil, "", fail(ErrBadEvent, "state key must be at most 255 bytes")
	}
	p := &pdu.PDU{
		Type:           req.Type,
		StateKey:       req.StateKey,
		Sender:         req.Sender,
		Content:        content,
		OriginServerTS: time.Now().UnixMilli(),
		RoomID:         rs.roomID,
		AuthEvents:     []id.EventID{},
	}
	p.PrevEvents, p.Depth = rs.prevEvents()
	if req.Redacts != "" {
		r := req.Redacts
		p.Redacts = &r
	}
	if req.Type == event.StateCreate.Type && rs.version.RoomIDIsCreateEventID() {
		// From v12 the room ID is derived from the create event itself.
		p.RoomID = ""
	}
	var authEvents []*pdu.PDU
	for _, k := range p.AuthEventSelection(rs.version) {
		if e, ok := rs.state[k]; ok {
			p.AuthEvents = append(p.AuthEvents, e.id)
			authEvents = append(authEvents, e.pdu)
		}
	}
	if err := p.Sign(rs.version, cfg.ServerName, id.KeyID(cfg.Key.ID), cfg.Key.Private); err != nil {
		// Content passed checkContent, so this should not happen; if it
		// does, it is this request's fault and fails it alone.
		return nil, "", opError{fmt.Errorf("%w: the event cannot be signed: %w", ErrBadEvent, err)}
	}
	if p.StateKey != nil {
		// Clients render "accepted the invitation", "changed their name"
		// from what the event replaced. Unsigned is outside the hashes and
		// signatures, so it can be set after signing.
		if prev, ok := rs.state[pdu.StateKey{Type: p.Type, StateKey: *p.StateKey}]; ok {
			u, err := json.Marshal(map[string]any{
				"replaces_state": prev.id, "prev_content": json.RawMessage(prev.pdu.Content), "prev_sender": prev.pdu.Sender,
			})
			if err != nil {
				return nil, "", opError{fmt.Errorf("%w: unsigned: %w", ErrBadEvent, err)}
			}
			p.Unsigned = jsontext.Value(u)
		}
	}
	evID, err := p.GetEventID(rs.version)
	if err != nil {
		return nil, "", opError{fmt.Errorf("%w: event ID: %w", ErrBadEvent, err)}
	}
	if authEvents == nil {
		authEvents = []*pdu.PDU{}
	}
	if err := eventauth.Authorize(rs.version, p, authEvents, rs.getEvents, cfg.getKey); err != nil {
		return nil, "", fail(ErrForbidden, "%s", err.Error())
	}
	return p, evID, nil
}

// getEvents serves the auth checker's look-ups (in v12, the create event by
// room ID) from the current state.
func (rs *roomState) getEvents(ids []id.EventID) ([]*pdu.PDU, error) {
	out := make([]*pdu.PDU, 0, len(ids))
	for _, want := range ids {
		for _, e := range rs.state {
			if e.id == want {
				out = append(out, e.pdu)
				break
			}
		}
	}
	return out, nil
}

func (c Config) getKey(serverName string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
	if serverName == c.ServerName && string(keyID) == c.Key.ID {
		return id.SigningKey(c.Key.PublicBase64()), time.Now().Add(24 * time.Hour), nil
	}
	return "", time.Time{}, nil
}

// getKey serves this hub's key and, through RemoteKeys, other servers'.
func (s *Server) getKey(serverName string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
	if serverName == s.cfg.ServerName || s.cfg.RemoteKeys == nil {
		return s.cfg.getKey(serverName, keyID, minValidUntil)
	}
	return s.cfg.RemoteKeys(serverName, keyID, minValidUntil)
}

// apply advances the room past an accepted event that extends the current
// state: its prev_events leave the extremities and it joins them.
func (rs *roomState) apply(p *pdu.PDU, evID id.EventID) {
	rs.head = evID
	xs := rs.extremities[:0]
	for _, x := range rs.extremities {
		if !slices.Contains(p.PrevEvents, id.EventID(x.EventID)) {
			xs = append(xs, x)
		}
	}
	rs.extremities = append(xs, store.Extremity{EventID: string(evID), Depth: p.Depth})
	store.SortExtremities(rs.extremities)
	if p.StateKey != nil {
		rs.state[pdu.StateKey{Type: p.Type, StateKey: *p.StateKey}] = stateEntry{id: evID, pdu: p}
	}
}
