package rooms

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

// FuzzCheckPDU: the inbound PDU decoder (format step) never panics, and
// what it accepts has a room, a type and an event ID.
func FuzzCheckPDU(f *testing.F) {
	f.Add([]byte(`{"auth_events":[],"content":{"body":"x","msgtype":"m.text"},"depth":3,"hashes":{"sha256":"abc"},"origin_server_ts":1,"prev_events":["$a"],"room_id":"!r:b.test","sender":"@bob:b.test","type":"m.room.message"}`))
	f.Add([]byte(`{"type":"m.room.create","state_key":"","content":{"room_version":"12"},"sender":"@bob:b.test","depth":1,"prev_events":[],"auth_events":[],"origin_server_ts":1}`))
	f.Add([]byte(`{"depth":1.5}`))
	f.Add([]byte(`{"prev_events":"x"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, v := range []id.RoomVersion{id.RoomV10, id.RoomV12} {
			in, err := checkFormatVersion(raw, v)
			if err != nil {
				continue
			}
			if in.room == "" || in.pdu.Type == "" || in.id == "" {
				t.Fatalf("accepted a PDU without room, type or ID: %s", raw)
			}
		}
	})
}
