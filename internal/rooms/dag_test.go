package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
)

// dagHarness builds events the way another writer would: against the
// state after chosen prev_events, signed with the hub's key or a remote
// server's.
type dagHarness struct {
	t      *testing.T
	s      *Server
	st     store.Store
	room   id.RoomID
	remote signingkey.Key
}

func (h *dagHarness) stateAfter(evID id.EventID) store.StateMap {
	h.t.Helper()
	e, err := h.st.EventByID(h.t.Context(), string(evID))
	if err != nil {
		h.t.Fatalf("event %s: %v", evID, err)
	}
	m, err := h.st.StateGroup(h.t.Context(), e.StateAfter)
	if err != nil {
		h.t.Fatalf("state after %s: %v", evID, err)
	}
	return m
}

// build makes an event on top of prevs, with auth events from the state
// after prevs[0], signed by the hub (local) or the remote server.
func (h *dagHarness) build(prevs []id.EventID, sender id.UserID, typ string, stateKey *string, content any, ts int64, local bool) *pdu.PDU {
	h.t.Helper()
	raw, err := json.Marshal(content)
	if err != nil {
		h.t.Fatal(err)
	}
	var depth int64
	for _, prev := range prevs {
		e, err := h.st.EventByID(h.t.Context(), string(prev))
		if err != nil {
			h.t.Fatalf("prev %s: %v", prev, err)
		}
		depth = max(depth, e.Depth)
	}
	p := &pdu.PDU{
		Type: typ, StateKey: stateKey, Sender: sender, Content: raw, OriginServerTS: ts,
		RoomID: h.room, Depth: depth + 1, PrevEvents: prevs, AuthEvents: []id.EventID{},
	}
	state := h.stateAfter(prevs[0])
	for _, k := range p.AuthEventSelection(id.RoomV11) {
		if ev, ok := state[store.StateKey{Type: k.Type, StateKey: k.StateKey}]; ok {
			p.AuthEvents = append(p.AuthEvents, id.EventID(ev))
		}
	}
	key, server := h.remote, "remote.test"
	if local {
		key, server = h.s.cfg.Key, h.s.cfg.ServerName
	}
	if err := p.Sign(id.RoomV11, server, id.KeyID(key.ID), key.Private); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *dagHarness) place(p *pdu.PDU) (id.EventID, placed) {
	h.t.Helper()
	evID, pl, err := h.s.place(h.t.Context(), p)
	if err != nil {
		h.t.Fatalf("place %s: %v", p.Type, err)
	}
	return evID, pl
}

func (h *dagHarness) send(typ string, stateKey *string, content any) id.EventID {
	h.t.Helper()
	raw, _ := json.Marshal(content)
	res, err := h.s.Send(h.t.Context(), Submit{RoomID: h.room, Sender: alice, Type: typ, StateKey: stateKey, Content: raw})
	if err != nil {
		h.t.Fatalf("send %s: %v", typ, err)
	}
	return res.EventID
}

func (h *dagHarness) extremities() []id.EventID {
	h.t.Helper()
	xs, err := h.st.Extremities(h.t.Context(), string(h.room))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []id.EventID
	for _, x := range xs {
		out = append(out, id.EventID(x.EventID))
	}
	slices.Sort(out)
	return out
}

func (h *dagHarness) currentState() store.StateMap {
	h.t.Helper()
	evs, err := h.st.CurrentState(h.t.Context(), string(h.room))
	if err != nil {
		h.t.Fatal(err)
	}
	m := store.StateMap{}
	for _, e := range evs {
		m[store.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e.EventID
	}
	return m
}

const alice = id.UserID("@alice:hub.test")

func sorted(ids ...id.EventID) []id.EventID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func newDAGHarness(t *testing.T, dialect string) *dagHarness {
	st := openStore(t, dialect)
	s, _ := newTestServer(t, st)
	res, err := s.CreateRoom(t.Context(), CreateRequest{Creator: alice, Preset: PresetPublicChat, Version: id.RoomV11})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := signingkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// Set before any request reaches the writer (the channel send orders it).
	s.cfg.RemoteKeys = func(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
		if server == "remote.test" && string(keyID) == remote.ID {
			return id.SigningKey(remote.PublicBase64()), time.Now().Add(time.Hour), nil
		}
		return "", time.Time{}, nil
	}
	return &dagHarness{t: t, s: s, st: st, room: res.RoomID, remote: remote}
}

func topic(s string) map[string]string { return map[string]string{"topic": s} }

// TestForkAndMerge: two writers extend the room from an old extremity (the
// room server locally, another writer from the past), then a local send
// merges them. Each step's current state is the one a reading of state
// resolution v2 gives, written out by hand as a delta from the state
// before the fork.
func TestForkAndMerge(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			h := newDAGHarness(t, dialect)
			sk := func(typ, key string) store.StateKey { return store.StateKey{Type: typ, StateKey: key} }
			empty := ""
			bob, bobKey := id.UserID("@bob:remote.test"), "@bob:remote.test"

			x := h.send("m.room.topic", &empty, topic("T0"))
			base := h.currentState()
			if got := h.extremities(); !slices.Equal(got, []id.EventID{x}) {
				t.Fatalf("extremities = %v, want [%s]", got, x)
			}
			// Branch 1, local: topic A on top of X.
			a := h.send("m.room.topic", &empty, topic("A"))
			aTS := h.event(a).OriginTS

			// Branch 2, from X: bob joins (a remote server's event).
			j, pl := h.place(h.build([]id.EventID{x}, bob, "m.room.member", &bobKey,
				map[string]string{"membership": "join"}, aTS+1000, false))
			if pl.Flags != 0 {
				t.Fatalf("bob's join flags = %v", pl.Flags)
			}
			if got := h.extremities(); !slices.Equal(got, sorted(a, j)) {
				t.Fatalf("after the fork: extremities = %v, want [%s %s]", got, a, j)
			}
			// Topic: {T0 (in J's state), A} conflict; both pass, A is later
			// in the mainline order (same power levels, later timestamp).
			// Bob's join is only in one set and passes the public join rule.
			want := store.ApplyDelta(base, store.StateMap{sk("m.room.topic", ""): string(a), sk("m.room.member", bobKey): string(j)})
			if got := h.currentState(); !maps.Equal(got, want) {
				t.Fatalf("after the fork: current state\n got %v\nwant %v", got, want)
			}

			// Branch 2 goes on: alice (as another writer of this hub) sets
			// topic B after bob's join, later than A.
			b, _ := h.place(h.build([]id.EventID{j}, alice, "m.room.topic", &empty, topic("B"), aTS+2000, true))
			if got := h.extremities(); !slices.Equal(got, sorted(a, b)) {
				t.Fatalf("extremities = %v, want [%s %s]", got, a, b)
			}
			want = store.ApplyDelta(base, store.StateMap{sk("m.room.topic", ""): string(b), sk("m.room.member", bobKey): string(j)})
			if got := h.currentState(); !maps.Equal(got, want) {
				t.Fatalf("before the merge: current state\n got %v\nwant %v", got, want)
			}

			// A local send merges both branches.
			m := h.send("m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "merge"})
			mp := h.pdu(m)
			if got := sorted(mp.PrevEvents...); !slices.Equal(got, sorted(a, b)) {
				t.Errorf("merge prev_events = %v, want [%s %s]", got, a, b)
			}
			if wantDepth := max(h.event(a).Depth, h.event(b).Depth) + 1; mp.Depth != wantDepth {
				t.Errorf("merge depth = %d, want %d", mp.Depth, wantDepth)
			}
			if got := h.extremities(); !slices.Equal(got, []id.EventID{m}) {
				t.Errorf("after the merge: extremities = %v, want [%s]", got, m)
			}
			if got := h.currentState(); !maps.Equal(got, want) {
				t.Errorf("after the merge: current state\n got %v\nwant %v", got, want)
			}
			if got := h.stateAfter(m); !maps.Equal(got, want) {
				t.Errorf("state after the merge event\n got %v\nwant %v", got, want)
			}
			members, err := h.st.RoomMembers(t.Context(), string(h.room), "join")
			if err != nil {
				t.Fatal(err)
			}
			if len(members) != 2 {
				t.Errorf("joined members = %v, want alice and bob", members)
			}
			// The room server's cache follows: bob may now speak.
			raw, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": "hi"})
			if _, err := h.s.Send(t.Context(), Submit{RoomID: h.room, Sender: bob, Type: "m.room.message", Content: raw}); err != nil {
				t.Errorf("bob cannot speak after the merge: %v", err)
			}
		})
	}
}

func (h *dagHarness) event(evID id.EventID) *store.Event {
	h.t.Helper()
	e, err := h.st.EventByID(h.t.Context(), string(evID))
	if err != nil {
		h.t.Fatalf("event %s: %v", evID, err)
	}
	return e
}

func (h *dagHarness) pdu(evID id.EventID) *pdu.PDU {
	h.t.Helper()
	p, err := ParsePDU(h.event(evID).JSON)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// TestSoftFailAndReject: an event valid against the state before it but
// not against current state is soft-failed; one invalid against the state
// before it is rejected. Neither is served, an extremity or current state.
func TestSoftFailAndReject(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			h := newDAGHarness(t, dialect)
			empty := ""
			carol, carolKey := id.UserID("@carol:remote.test"), "@carol:remote.test"
			x := h.send("m.room.topic", &empty, topic("T0"))
			inv := h.send("m.room.join_rules", &empty, map[string]string{"join_rule": "invite"})
			before := h.currentState()
			ts := time.Now().UnixMilli()

			// Built on X, where the room was public: valid there, not now.
			sf, pl := h.place(h.build([]id.EventID{x}, carol, "m.room.member", &carolKey, map[string]string{"membership": "join"}, ts, false))
			if pl.Flags != store.FlagSoftFailed || pl.Pos >= 0 {
				t.Errorf("soft-failed join: flags %v at %d, want soft-failed at a negative position", pl.Flags, pl.Pos)
			}
			// Built on the invite-only rule: invalid against its own state.
			rj, pl := h.place(h.build([]id.EventID{inv}, carol, "m.room.member", &carolKey, map[string]string{"membership": "join", "x": "y"}, ts+1, false))
			if pl.Flags != store.FlagRejected || pl.Pos >= 0 {
				t.Errorf("rejected join: flags %v at %d, want rejected at a negative position", pl.Flags, pl.Pos)
			}
			if got := h.extremities(); !slices.Equal(got, []id.EventID{inv}) {
				t.Errorf("extremities = %v, want [%s]", got, inv)
			}
			if got := h.currentState(); !maps.Equal(got, before) {
				t.Errorf("current state changed: %v", got)
			}
			for _, e := range []id.EventID{sf, rj} {
				if _, err := h.st.EventByID(t.Context(), string(e)); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("EventByID(%s) served: %v", e, err)
				}
			}
			// A local send references neither.
			m := h.send("m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "x"})
			if got := h.pdu(m).PrevEvents; !slices.Equal(got, []id.EventID{inv}) {
				t.Errorf("local send prev_events = %v, want [%s]", got, inv)
			}
			// An event on a rejected or unknown prev is not placed.
			for _, prev := range []id.EventID{rj, "$unknown"} {
				p := h.build([]id.EventID{m}, carol, "m.room.message", nil, map[string]string{"body": "x"}, ts+2, false)
				p.PrevEvents = []id.EventID{prev}
				if _, _, err := h.s.place(context.Background(), p); !errors.Is(err, ErrMissingPrev) {
					t.Errorf("event on prev %s: err = %v, want ErrMissingPrev", prev, err)
				}
			}
		})
	}
}
