package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"

	"github.com/eimis-hub/eimis/internal/canonjson"
	"github.com/eimis-hub/eimis/internal/store"
)

// Limits on an inbound PDU's references (those other servers apply).
const (
	maxInboundPrevEvents = 20
	maxInboundAuthEvents = 10
)

// inbound is an event between the pipeline's steps.
type inbound struct {
	pdu     *pdu.PDU
	id      id.EventID
	room    id.RoomID
	version id.RoomVersion
}

// checkFormat is step 1: the PDU is canonical JSON within the size limit,
// of a room this hub knows and a version it supports, with fields within
// the spec's bounds.
func (s *Server) checkFormat(ctx context.Context, raw json.RawMessage) (*inbound, error) {
	if len(raw) > MaxEventBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadPDU, len(raw), MaxEventBytes)
	}
	roomID := gjson.GetBytes(raw, "room_id").Str
	if roomID == "" {
		return nil, fmt.Errorf("%w: no room ID", ErrBadPDU)
	}
	room, err := s.st.GetRoom(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownRoom, roomID)
	} else if err != nil {
		return nil, err
	}
	return checkFormatVersion(raw, id.RoomVersion(room.Version))
}

// checkFormatVersion is step 1 for an event of a room of the given
// version, whether or not the room is stored yet (a room being joined).
func checkFormatVersion(raw json.RawMessage, version id.RoomVersion) (*inbound, error) {
	if len(raw) > MaxEventBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadPDU, len(raw), MaxEventBytes)
	}
	if !IsSupported(version) {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedRoomVersion, version)
	}
	if err := canonjson.Validate(raw); err != nil {
		return nil, fmt.Errorf("%w: not canonical JSON: %w", ErrBadPDU, err)
	}
	p, err := ParsePDU(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPDU, err)
	}
	isCreate := p.Type == event.StateCreate.Type && p.StateKey != nil && *p.StateKey == ""
	room := p.RoomID
	if isCreate && version.RoomIDIsCreateEventID() && room == "" {
		// From v12 the create event carries no room ID: it is derived
		// (and not added to the event, whose signature covers it as is).
		if room, err = p.GetRoomID(); err != nil {
			return nil, fmt.Errorf("%w: room ID of the create event: %w", ErrBadPDU, err)
		}
	}
	switch {
	case room == "":
		return nil, fmt.Errorf("%w: no room ID", ErrBadPDU)
	case p.Type == "" || len(p.Type) > 255:
		return nil, fmt.Errorf("%w: event type must be 1..255 bytes", ErrBadPDU)
	case p.StateKey != nil && len(*p.StateKey) > 255:
		return nil, fmt.Errorf("%w: state key over 255 bytes", ErrBadPDU)
	case p.Depth < 0 || p.Depth > MaxDepth:
		return nil, fmt.Errorf("%w: depth %d out of range", ErrBadPDU, p.Depth)
	case (len(p.PrevEvents) == 0 && !isCreate) || len(p.PrevEvents) > maxInboundPrevEvents:
		return nil, fmt.Errorf("%w: %d prev_events", ErrBadPDU, len(p.PrevEvents))
	case len(p.AuthEvents) > maxInboundAuthEvents:
		return nil, fmt.Errorf("%w: %d auth_events", ErrBadPDU, len(p.AuthEvents))
	}
	if _, _, err := p.Sender.ParseAndValidateRelaxed(); err != nil {
		return nil, fmt.Errorf("%w: sender: %w", ErrBadPDU, err)
	}
	evID, err := p.GetEventID(version)
	if err != nil {
		return nil, fmt.Errorf("%w: event ID: %w", ErrBadPDU, err)
	}
	return &inbound{pdu: p, id: evID, room: room, version: version}, nil
}
