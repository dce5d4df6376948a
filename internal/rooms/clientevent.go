package rooms

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// wirePDU is the part of a stored PDU a client sees. Decoding only these
// fields keeps /sync cheap: content stays raw bytes.
type wirePDU struct {
	Type           string          `json:"type"`
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
	StateKey       *string         `json:"state_key,omitempty"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       struct {
		RedactedBecause json.RawMessage `json:"redacted_because,omitempty"`
		PrevContent     json.RawMessage `json:"prev_content,omitempty"`
		PrevSender      string          `json:"prev_sender,omitempty"`
		ReplacesState   string          `json:"replaces_state,omitempty"`
	} `json:"unsigned"`
}

// ClientEvent is the Client-Server API form of an event.
type ClientEvent struct {
	Type           string          `json:"type"`
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	StateKey       *string         `json:"state_key,omitempty"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       *Unsigned       `json:"unsigned,omitempty"`
}

// Unsigned carries the server's per-delivery facts.
type Unsigned struct {
	Age             int64           `json:"age"`
	TransactionID   string          `json:"transaction_id,omitempty"`
	RedactedBecause json.RawMessage `json:"redacted_because,omitempty"`
	PrevContent     json.RawMessage `json:"prev_content,omitempty"`
	PrevSender      string          `json:"prev_sender,omitempty"`
	ReplacesState   string          `json:"replaces_state,omitempty"`
}

// ToClientEvent converts a stored event. withRoomID is false inside /sync
// room sections, where the room is implied.
func ToClientEvent(e store.Event, withRoomID bool) (ClientEvent, error) {
	var w wirePDU
	if err := json.Unmarshal(e.JSON, &w); err != nil {
		return ClientEvent{}, fmt.Errorf("decode event %s: %w", e.EventID, err)
	}
	ce := ClientEvent{
		Type: w.Type, Content: w.Content, EventID: e.EventID, Sender: w.Sender,
		OriginServerTS: w.OriginServerTS, StateKey: w.StateKey, Redacts: w.Redacts,
		Unsigned: &Unsigned{
			Age: max(0, time.Now().UnixMilli()-w.OriginServerTS), RedactedBecause: w.Unsigned.RedactedBecause,
			PrevContent: w.Unsigned.PrevContent, PrevSender: w.Unsigned.PrevSender, ReplacesState: w.Unsigned.ReplacesState,
		},
	}
	if len(ce.Content) == 0 {
		ce.Content = json.RawMessage("{}")
	}
	if withRoomID {
		ce.RoomID = e.RoomID
	}
	return ce, nil
}

// ToClientEvents converts a list, skipping nothing: a stored event that
// cannot be decoded is a bug worth an error.
func ToClientEvents(evs []store.Event, withRoomID bool) ([]ClientEvent, error) {
	out := make([]ClientEvent, 0, len(evs))
	for _, e := range evs {
		ce, err := ToClientEvent(e, withRoomID)
		if err != nil {
			return nil, err
		}
		out = append(out, ce)
	}
	return out, nil
}

// StrippedState is the invite_state form of a state event.
type StrippedState struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
	Sender   string          `json:"sender"`
}

// strippedTypes are the state an invitee sees before joining, as the spec
// recommends.
var strippedTypes = map[string]bool{
	"m.room.create": true, "m.room.join_rules": true, "m.room.name": true,
	"m.room.avatar": true, "m.room.canonical_alias": true, "m.room.encryption": true,
	"m.room.topic": true,
}

// InviteState picks the stripped state shown with an invite for user.
func InviteState(state []store.Event, user string) ([]StrippedState, error) {
	var out []StrippedState
	for _, e := range state {
		if e.StateKey == nil {
			continue
		}
		if !strippedTypes[e.Type] && !(e.Type == "m.room.member" && *e.StateKey == user) {
			continue
		}
		var w wirePDU
		if err := json.Unmarshal(e.JSON, &w); err != nil {
			return nil, fmt.Errorf("decode event %s: %w", e.EventID, err)
		}
		out = append(out, StrippedState{Type: w.Type, StateKey: *w.StateKey, Content: w.Content, Sender: w.Sender})
	}
	return out, nil
}
