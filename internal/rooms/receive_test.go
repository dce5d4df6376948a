package rooms

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
)

func (h *dagHarness) raw(p *pdu.PDU) json.RawMessage {
	h.t.Helper()
	raw, err := marshalPDU(p)
	if err != nil {
		h.t.Fatal(err)
	}
	return raw
}

// TestReceive runs remote events, built and signed in the test by a second
// server's key, through the inbound pipeline.
func TestReceive(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			h := newDAGHarness(t, dialect)
			ctx := t.Context()
			empty := ""
			bob, bobKey := id.UserID("@bob:remote.test"), "@bob:remote.test"
			carol, carolKey := id.UserID("@carol:remote.test"), "@carol:remote.test"
			x := h.send("m.room.topic", &empty, topic("T0"))
			ts := time.Now().UnixMilli()
			join := func(prev id.EventID, who id.UserID, key string) *pdu.PDU {
				return h.build([]id.EventID{prev}, who, "m.room.member", &key, map[string]string{"membership": "join"}, ts, false)
			}

			// Accepted: bob joins on top of the current extremity.
			jp := join(x, bob, bobKey)
			got, err := h.s.Receive(ctx, h.raw(jp))
			if err != nil || got.Outcome != Accepted || got.Pos <= 0 {
				t.Fatalf("bob's join: %+v, %v; want accepted at a live position", got, err)
			}
			j := got.EventID
			if xs := h.extremities(); !slices.Equal(xs, []id.EventID{j}) {
				t.Errorf("extremities = %v, want [%s]", xs, j)
			}
			if h.currentState()[store.StateKey{Type: "m.room.member", StateKey: bobKey}] != string(j) {
				t.Error("bob's join is not current state")
			}
			// The same event again changes nothing.
			if again, err := h.s.Receive(ctx, h.raw(jp)); err != nil || again.Outcome != Duplicate {
				t.Errorf("duplicate: %+v, %v", again, err)
			}

			// A message whose content was altered after signing: the
			// signature (over the redacted form) holds, the hash does not;
			// the event is kept redacted.
			msg := h.build([]id.EventID{j}, bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "signed"}, ts+1, false)
			msg.Content = []byte(`{"body":"tampered","msgtype":"m.text"}`)
			got, err = h.s.Receive(ctx, h.raw(msg))
			if err != nil || got.Outcome != Accepted {
				t.Fatalf("tampered message: %+v, %v", got, err)
			}
			if c := string(h.pdu(got.EventID).Content); c != "{}" {
				t.Errorf("tampered message stored with content %s, want it redacted", c)
			}
			m := got.EventID

			// Dropped before anything is stored.
			other, _ := signingkey.Generate()
			forged := join(m, carol, carolKey)
			forged.Signatures = nil
			if err := forged.Sign(id.RoomV11, "remote.test", id.KeyID(h.remote.ID), other.Private); err != nil {
				t.Fatal(err)
			}
			unknownAuth := join(m, carol, carolKey)
			unknownAuth.AuthEvents = append(unknownAuth.AuthEvents, "$nowhere")
			resign(t, h, unknownAuth)
			unknownPrev := join(m, carol, carolKey)
			unknownPrev.PrevEvents = []id.EventID{"$nowhere"}
			resign(t, h, unknownPrev)
			deep := join(m, carol, carolKey)
			deepRaw := json.RawMessage(strings.Replace(string(h.raw(deep)), fmt.Sprintf(`"depth":%d`, deep.Depth), `"depth":9007199254740992`, 1))
			noPrev := join(m, carol, carolKey)
			noPrev.PrevEvents = []id.EventID{}
			resign(t, h, noPrev)
			before := h.currentState()
			for _, c := range []struct {
				name string
				raw  json.RawMessage
				want error
			}{
				{"forged signature", h.raw(forged), ErrBadSignature},
				{"unknown auth event", h.raw(unknownAuth), ErrMissingAuth},
				{"unknown prev event", h.raw(unknownPrev), ErrMissingPrev},
				{"depth over the limit", deepRaw, ErrBadPDU},
				{"no prev events", h.raw(noPrev), ErrBadPDU},
				{"not canonical JSON", json.RawMessage(`{"type":"m.room.message","depth":1.5}`), ErrBadPDU},
				{"unknown room", h.raw(&pdu.PDU{Type: "m.room.message", RoomID: "!nope:remote.test", Sender: bob,
					PrevEvents: []id.EventID{m}, AuthEvents: []id.EventID{}, Content: []byte("{}")}), ErrUnknownRoom},
			} {
				if _, err := h.s.Receive(ctx, c.raw); !errors.Is(err, c.want) {
					t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
				}
			}
			if xs := h.extremities(); !slices.Equal(xs, []id.EventID{m}) {
				t.Errorf("extremities after dropped events = %v, want [%s]", xs, m)
			}
			if !maps.Equal(h.currentState(), before) {
				t.Error("current state changed by dropped events")
			}

			// Rejected by its own auth events: carol speaks without having
			// joined.
			speak := h.build([]id.EventID{m}, carol, "m.room.message", nil, map[string]string{"body": "hi"}, ts+2, false)
			got, err = h.s.Receive(ctx, h.raw(speak))
			if err != nil || got.Outcome != Rejected || got.Pos >= 0 {
				t.Errorf("carol speaking: %+v, %v; want rejected at a negative position", got, err)
			}
			if _, err := h.st.EventByID(ctx, string(got.EventID)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("rejected event served: %v", err)
			}
			// An event naming the rejected one as prev_event is not placed.
			after := h.build([]id.EventID{m}, bob, "m.room.message", nil, map[string]string{"body": "x"}, ts+3, false)
			after.PrevEvents = []id.EventID{got.EventID}
			resign(t, h, after)
			if _, err := h.s.Receive(ctx, h.raw(after)); !errors.Is(err, ErrMissingPrev) {
				t.Errorf("event on a rejected prev: err = %v, want ErrMissingPrev", err)
			}

			// Soft-failed: valid on the public room of X, but the room is
			// invite-only now.
			inv := h.send("m.room.join_rules", &empty, map[string]string{"join_rule": "invite"})
			got, err = h.s.Receive(ctx, h.raw(join(x, carol, carolKey)))
			if err != nil || got.Outcome != SoftFailed || got.Pos >= 0 {
				t.Errorf("carol's late join: %+v, %v; want soft-failed at a negative position", got, err)
			}
			if xs := h.extremities(); !slices.Equal(xs, []id.EventID{inv}) {
				t.Errorf("extremities = %v, want [%s]", xs, inv)
			}
			if _, ok := h.currentState()[store.StateKey{Type: "m.room.member", StateKey: carolKey}]; ok {
				t.Error("a soft-failed join is current state")
			}
		})
	}
}

// resign signs p again after a test changed it.
func resign(t *testing.T, h *dagHarness, p *pdu.PDU) {
	t.Helper()
	p.Signatures = nil
	p.Hashes = nil
	if err := p.Sign(id.RoomV11, "remote.test", id.KeyID(h.remote.ID), h.remote.Private); err != nil {
		t.Fatal(err)
	}
}
