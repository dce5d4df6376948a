package rooms

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/signingkey"
)

// newTestRoom builds a room's initial state in memory, as CreateRoom does,
// without a store.
func newTestRoom(t testing.TB, version id.RoomVersion, invite ...id.UserID) (*roomState, Config) {
	t.Helper()
	key, err := signingkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ServerName: "hub.test", Key: key, DefaultVersion: version}
	s := &Server{cfg: cfg}
	subs, err := s.initialEvents(CreateRequest{Creator: "@alice:hub.test", Version: version, Preset: PresetPrivateChat, Name: "r", Invite: invite})
	if err != nil {
		t.Fatal(err)
	}
	rs := newRoomState("", version)
	if !version.RoomIDIsCreateEventID() {
		rs.roomID = "!test:hub.test"
	}
	for i, sub := range subs {
		sub.RoomID = rs.roomID
		p, evID, err := rs.build(cfg, sub)
		if err != nil {
			t.Fatalf("initial event %d (%s): %v", i, sub.Type, err)
		}
		if i == 0 && version.RoomIDIsCreateEventID() {
			if rs.roomID, err = p.GetRoomID(); err != nil {
				t.Fatal(err)
			}
		}
		rs.apply(p, evID)
	}
	return rs, cfg
}

func sk(s string) *string { return &s }

func TestBuildAuthorises(t *testing.T) {
	for _, v := range SupportedVersions {
		t.Run(string(v), func(t *testing.T) {
			rs, cfg := newTestRoom(t, v, "@bob:hub.test")
			cases := []struct {
				name string
				sub  Submit
				err  error
			}{
				{"creator sends a message", Submit{Sender: "@alice:hub.test", Type: "m.room.message", Content: json.RawMessage(`{"body":"hi"}`)}, nil},
				{"invitee cannot send before joining", Submit{Sender: "@bob:hub.test", Type: "m.room.message", Content: json.RawMessage(`{}`)}, ErrForbidden},
				{"stranger cannot join an invite-only room", Submit{Sender: "@eve:hub.test", Type: "m.room.member", StateKey: sk("@eve:hub.test"), Content: json.RawMessage(`{"membership":"join"}`)}, ErrForbidden},
				{"invitee may join", Submit{Sender: "@bob:hub.test", Type: "m.room.member", StateKey: sk("@bob:hub.test"), Content: json.RawMessage(`{"membership":"join"}`)}, nil},
				{"content must be an object", Submit{Sender: "@alice:hub.test", Type: "m.room.message", Content: json.RawMessage(`[1]`)}, ErrBadEvent},
				{"empty type", Submit{Sender: "@alice:hub.test", Content: json.RawMessage(`{}`)}, ErrBadEvent},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					before := rs.head
					c.sub.RoomID = rs.roomID
					p, evID, err := rs.build(cfg, c.sub)
					if c.err != nil {
						if !errors.Is(err, c.err) {
							t.Fatalf("got %v, want %v", err, c.err)
						}
						if rs.head != before {
							t.Fatal("a refused event moved the room head")
						}
						return
					}
					if err != nil {
						t.Fatalf("unexpected error %v", err)
					}
					if len(p.PrevEvents) != 1 || p.PrevEvents[0] != before {
						t.Fatalf("prev_events %v, want [%s]", p.PrevEvents, before)
					}
					if !p.VerifyContentHash() {
						t.Fatal("content hash does not verify")
					}
					getKey := func(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error) {
						return id.SigningKey(cfg.Key.PublicBase64()), time.Now().Add(time.Hour), nil
					}
					if err := p.VerifySignature(v, "hub.test", getKey); err != nil {
						t.Fatalf("signature: %v", err)
					}
					rs.apply(p, evID)
				})
			}
		})
	}
}

// FuzzBuildEvent feeds arbitrary types, state keys and content to the
// builder: it must refuse the request alone (an opError) or produce a PDU
// that hashes, signs and re-parses, never panic.
func FuzzBuildEvent(f *testing.F) {
	f.Add("m.room.message", false, "", []byte(`{"msgtype":"m.text","body":"hi"}`))
	f.Add("m.room.member", true, "@bob:hub.test", []byte(`{"membership":"invite"}`))
	f.Add("m.room.power_levels", true, "", []byte(`{"users":{"@alice:hub.test":"100"}}`))
	f.Add("m.room.name", true, "", []byte(`{"name":1e999}`))
	f.Add("m.room.create", true, "", []byte(`{}`))
	f.Add("x", false, "", []byte(`{"a":"\ud800"}`))
	rs, cfg := newTestRoom(f, id.RoomV11, "@bob:hub.test")
	f.Fuzz(func(t *testing.T, typ string, isState bool, stateKey string, content []byte) {
		sub := Submit{RoomID: rs.roomID, Sender: "@alice:hub.test", Type: typ, Content: content}
		if isState {
			sub.StateKey = &stateKey
		}
		p, _, err := rs.build(cfg, sub)
		if err != nil {
			// Refused (auth rules, bad content, or content canonical JSON
			// cannot encode): that fails this request, never its batch.
			if !isOpError(err) {
				t.Fatalf("building one event failed its batch: %v", err)
			}
			return
		}
		raw, err := marshalPDU(p)
		if err != nil {
			t.Fatalf("built event does not marshal: %v", err)
		}
		back, err := ParsePDU(raw)
		if err != nil {
			t.Fatalf("built event does not re-parse: %v", err)
		}
		if !back.VerifyContentHash() {
			t.Fatal("content hash of the re-parsed event does not verify")
		}
	})
}
