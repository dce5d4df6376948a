package rooms

import (
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

// redactionTarget finds the event a redaction names and checks that the
// sender may redact it: its own event, or the room's redact power. The
// auth rules accept any redaction at the events_default level and leave
// this check to the server, which Synapse also makes at send time.
func (b *batch) redactionTarget(rs *roomState, req Submit) (*store.Event, error) {
	target := req.Redacts
	if target == "" {
		target = id.EventID(gjson.GetBytes(req.Content, "redacts").Str)
	}
	if target == "" {
		return nil, fail(ErrBadEvent, "a redaction must name the event it redacts")
	}
	if !storable(string(target)) {
		return nil, fail(ErrUnknownEvent, "the event to redact is not in this room")
	}
	te, err := b.tx.GetEvent(b.ctx, string(target))
	if errors.Is(err, store.ErrNotFound) || (err == nil && te.RoomID != string(rs.roomID)) {
		return nil, fail(ErrUnknownEvent, "event %s is not in this room", target)
	} else if err != nil {
		return nil, err
	}
	if te.Sender == string(req.Sender) || rs.mayRedactOthers(req.Sender) {
		return te, nil
	}
	return nil, fail(ErrForbidden, "you may only redact your own events in this room")
}

// mayRedactOthers applies the room's redact power level (room creators
// have unlimited power from room v12).
func (rs *roomState) mayRedactOthers(sender id.UserID) bool {
	if create := rs.state[pdu.StateKey{Type: event.StateCreate.Type}].pdu; create != nil && rs.version.PrivilegedRoomCreators() {
		if create.Sender == sender {
			return true
		}
		for _, c := range gjson.GetBytes(create.Content, "additional_creators").Array() {
			if c.Str == string(sender) {
				return true
			}
		}
	}
	var pl event.PowerLevelsEventContent
	if e := rs.state[pdu.StateKey{Type: event.StatePowerLevels.Type}].pdu; e != nil {
		if err := json.Unmarshal(e.Content, &pl); err != nil {
			return false // deny when unsure
		}
	}
	return pl.GetUserLevel(sender) >= pl.Redact()
}

// applyRedaction stores the target in its redacted form, with the
// redaction in unsigned.redacted_because as clients expect. Hashes and
// signatures stay valid: they cover the redacted form.
func (b *batch) applyRedaction(rs *roomState, target *store.Event, redaction *pdu.PDU, redactionID id.EventID) error {
	tp, err := ParsePDU(target.JSON)
	if err != nil {
		return fmt.Errorf("redact %s: %w", target.EventID, err)
	}
	because, err := json.Marshal(map[string]any{
		"type": redaction.Type, "content": json.RawMessage(redaction.Content), "sender": redaction.Sender,
		"event_id": redactionID, "origin_server_ts": redaction.OriginServerTS, "room_id": rs.roomID,
		"redacts": target.EventID,
	})
	if err != nil {
		return err
	}
	red := tp.Redact(rs.version)
	unsigned, err := json.Marshal(map[string]json.RawMessage{"redacted_because": because})
	if err != nil {
		return err
	}
	red.Unsigned = jsontext.Value(unsigned)
	raw, err := marshalPDU(red)
	if err != nil {
		return err
	}
	if err := b.tx.RedactEvent(b.ctx, target.EventID, raw); err != nil {
		return err
	}
	if red.StateKey != nil {
		// A redacted state event stays in the state, in its redacted form.
		k := pdu.StateKey{Type: red.Type, StateKey: *red.StateKey}
		if cur, ok := rs.state[k]; ok && string(cur.id) == target.EventID {
			rs.state[k] = stateEntry{id: cur.id, pdu: red}
		}
	}
	return nil
}
