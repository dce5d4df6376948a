package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/store"
)

// Presets of createRoom, as the Client-Server API names them.
const (
	PresetPrivateChat        = "private_chat"
	PresetTrustedPrivateChat = "trusted_private_chat"
	PresetPublicChat         = "public_chat"
)

// StateEvent is an initial state entry of createRoom.
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRequest is a createRoom call, already decoded.
type CreateRequest struct {
	Creator            id.UserID
	CreatorDisplayName string
	Version            id.RoomVersion
	Preset             string
	Name               string
	Topic              string
	Alias              id.RoomAlias // already reserved by the caller, or ""
	Invite             []id.UserID
	IsDirect           bool
	InitialState       []StateEvent
	CreationContent    json.RawMessage
	PowerLevelOverride json.RawMessage
}

// CreateRoom builds every initial event of a new room in memory first and
// stores them together, so a room is either wholly created or not at all.
func (s *Server) CreateRoom(ctx context.Context, req CreateRequest) (*Result, error) {
	if req.Version == "" {
		req.Version = s.cfg.DefaultVersion
	}
	if !IsSupported(req.Version) {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedRoomVersion, req.Version)
	}
	from := door.From(ctx).String()
	if req.Preset == "" {
		req.Preset = PresetPrivateChat
	}
	switch req.Preset {
	case PresetPrivateChat, PresetTrustedPrivateChat, PresetPublicChat:
	default:
		return nil, fmt.Errorf("%w: unknown preset %q", ErrBadEvent, req.Preset)
	}
	subs, err := s.initialEvents(req)
	if err != nil {
		return nil, err
	}
	for _, sub := range subs {
		if err := checkSubmit(sub); err != nil {
			return nil, err
		}
	}
	return s.submit(ctx, func(b *batch) (*Result, error) {
		var roomID id.RoomID
		if !req.Version.RoomIDIsCreateEventID() {
			roomID = id.RoomID(fmt.Sprintf("!%s:%s", identity.RandomString(18), s.cfg.ServerName))
		}
		rs := newRoomState(roomID, req.Version)
		var evs []store.Event
		var pdus []*pdu.PDU
		for i, sub := range subs {
			sub.RoomID = rs.roomID
			p, evID, err := rs.build(s.cfg, sub)
			if err != nil {
				return nil, err
			}
			if i == 0 && req.Version.RoomIDIsCreateEventID() {
				rid, err := p.GetRoomID()
				if err != nil {
					return nil, opError{fmt.Errorf("%w: room ID of the create event: %w", ErrBadEvent, err)}
				}
				rs.roomID = rid
			}
			raw, err := marshalPDU(p)
			if err != nil {
				return nil, opError{fmt.Errorf("%w: %w", ErrBadEvent, err)}
			}
			if len(raw) > MaxEventBytes {
				return nil, fail(ErrTooLarge, "initial event %s is %d bytes", p.Type, len(raw))
			}
			rs.apply(p, evID)
			pdus = append(pdus, p)
			evs = append(evs, store.Event{
				EventID: string(evID), RoomID: string(rs.roomID), Type: p.Type, StateKey: p.StateKey,
				Sender: string(p.Sender), Depth: p.Depth, OriginTS: p.OriginServerTS, JSON: raw,
				Membership: membershipOf(p), Door: from,
			})
		}
		err := b.tx.CreateRoom(b.ctx, store.Room{
			RoomID: string(rs.roomID), Version: string(req.Version), Creator: string(req.Creator), CreatedAt: time.Now(),
		})
		if errors.Is(err, store.ErrExists) {
			return nil, fail(ErrBadEvent, "room ID collision, retry")
		} else if err != nil {
			return nil, err
		}
		// The state groups first, then the events: on Postgres, inserts
		// are buffered and a group written between two would flush them.
		for i := range evs {
			before, after, err := b.stateGroups(rs, pdus[i], id.EventID(evs[i].EventID))
			if err != nil {
				return nil, err
			}
			rs.group = after
			evs[i].StateBefore, evs[i].StateAfter = before, after
		}
		for i := range evs {
			pos, err := b.tx.InsertEvent(b.ctx, store.NewEvent{Event: evs[i], PrevEvents: eventIDs(pdus[i].PrevEvents), Local: true})
			if err != nil {
				return nil, err
			}
			evs[i].Pos = pos
		}
		b.created = append(b.created, evs...)
		b.s.cache[string(rs.roomID)] = rs
		b.touched[string(rs.roomID)] = rs
		return &Result{RoomID: rs.roomID, EventID: id.EventID(evs[0].EventID)}, nil
	})
}

func (s *Server) initialEvents(req CreateRequest) ([]Submit, error) {
	sk := func(k string) *string { return &k }
	mk := func(typ string, stateKey *string, content any) (Submit, error) {
		raw, err := json.Marshal(content)
		if err != nil {
			return Submit{}, fmt.Errorf("%w: %w", ErrBadEvent, err)
		}
		return Submit{Sender: req.Creator, Type: typ, StateKey: stateKey, Content: raw}, nil
	}
	var out []Submit
	add := func(typ string, stateKey *string, content any) error {
		sub, err := mk(typ, stateKey, content)
		if err == nil {
			out = append(out, sub)
		}
		return err
	}

	create := map[string]any{}
	if len(req.CreationContent) > 0 {
		if err := json.Unmarshal(req.CreationContent, &create); err != nil {
			return nil, fmt.Errorf("%w: creation_content: %w", ErrBadEvent, err)
		}
	}
	create["room_version"] = string(req.Version)
	if req.Version.CreatorInContent() {
		create["creator"] = req.Creator
	} else {
		delete(create, "creator")
	}
	if err := add(event.StateCreate.Type, sk(""), create); err != nil {
		return nil, err
	}
	member := map[string]any{"membership": "join"}
	if req.CreatorDisplayName != "" {
		member["displayname"] = req.CreatorDisplayName
	}
	if err := add(event.StateMember.Type, sk(string(req.Creator)), member); err != nil {
		return nil, err
	}

	pl := s.defaultPowerLevels(req)
	if len(req.PowerLevelOverride) > 0 {
		var override map[string]any
		if err := json.Unmarshal(req.PowerLevelOverride, &override); err != nil {
			return nil, fmt.Errorf("%w: power_level_content_override: %w", ErrBadEvent, err)
		}
		for k, v := range override {
			pl[k] = v
		}
	}
	if err := add(event.StatePowerLevels.Type, sk(""), pl); err != nil {
		return nil, err
	}
	if req.Alias != "" {
		if err := add(event.StateCanonicalAlias.Type, sk(""), map[string]any{"alias": req.Alias}); err != nil {
			return nil, err
		}
	}
	joinRule, guest := "invite", "can_join"
	if req.Preset == PresetPublicChat {
		joinRule, guest = "public", "forbidden"
	}
	// A preset's default gives way to the same state in initial_state, as
	// the spec says: a room asked for as `joined` or `world_readable` is
	// never `shared` for the events in between, not even briefly.
	given := map[string]bool{}
	for _, st := range req.InitialState {
		if st.StateKey == "" {
			given[st.Type] = true
		}
	}
	for _, d := range []struct {
		typ     string
		content map[string]any
	}{
		{event.StateJoinRules.Type, map[string]any{"join_rule": joinRule}},
		{event.StateHistoryVisibility.Type, map[string]any{"history_visibility": "shared"}},
		{event.StateGuestAccess.Type, map[string]any{"guest_access": guest}},
	} {
		if given[d.typ] {
			continue
		}
		if err := add(d.typ, sk(""), d.content); err != nil {
			return nil, err
		}
	}
	for _, st := range req.InitialState {
		switch st.Type {
		case event.StateCreate.Type, event.StateMember.Type, event.StatePowerLevels.Type:
			return nil, fmt.Errorf("%w: initial_state may not contain %s", ErrBadEvent, st.Type)
		}
		sub := Submit{Sender: req.Creator, Type: st.Type, StateKey: sk(st.StateKey), Content: st.Content}
		out = append(out, sub)
	}
	if req.Name != "" {
		if err := add(event.StateRoomName.Type, sk(""), map[string]any{"name": req.Name}); err != nil {
			return nil, err
		}
	}
	if req.Topic != "" {
		if err := add(event.StateTopic.Type, sk(""), map[string]any{"topic": req.Topic}); err != nil {
			return nil, err
		}
	}
	for _, u := range req.Invite {
		content := map[string]any{"membership": "invite"}
		if req.IsDirect {
			content["is_direct"] = true
		}
		if err := add(event.StateMember.Type, sk(string(u)), content); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// defaultPowerLevels follows the levels Matrix servers commonly use, so
// Element shows familiar roles.
func (s *Server) defaultPowerLevels(req CreateRequest) map[string]any {
	users := map[string]any{}
	// Room v12 gives creators infinite power through the create event;
	// listing them in power levels is forbidden there.
	if !req.Version.PrivilegedRoomCreators() {
		users[string(req.Creator)] = 100
	}
	if req.Preset == PresetTrustedPrivateChat {
		for _, u := range req.Invite {
			users[string(u)] = 100
		}
	}
	return map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         0,
		"events": map[string]any{
			"m.room.name":               50,
			"m.room.avatar":             50,
			"m.room.topic":              50,
			"m.room.canonical_alias":    50,
			"m.room.power_levels":       100,
			"m.room.history_visibility": 100,
			"m.room.encryption":         100,
			"m.room.server_acl":         100,
			"m.room.tombstone":          100,
		},
		"notifications": map[string]any{"room": 50},
	}
}
