package inbound

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// joinedPair is A's public room with bob of B joined.
func joinedPair(t *testing.T, dialect string) (*network, *node, *node, id.RoomID) {
	t.Helper()
	nw := newNetwork(t, dialect, hubA, hubB)
	a, b := nw.nodes[hubA], nw.nodes[hubB]
	room := a.createRoom(t, alice, id.RoomV11, rooms.PresetPublicChat)
	if _, err := b.in.JoinRoom(t.Context(), bob, string(room), []string{hubA}); err != nil {
		t.Fatal(err)
	}
	return nw, a, b, room
}

// built is an event of B's current state, signed by B, not stored.
func (n *node) built(t *testing.T, room id.RoomID, sender id.UserID, typ string, stateKey *string, content any) json.RawMessage {
	t.Helper()
	raw, _ := json.Marshal(content)
	b, err := n.rs.Build(t.Context(), rooms.Submit{RoomID: room, Sender: sender, Type: typ, StateKey: stateKey, Content: raw})
	if err != nil {
		t.Fatal(err)
	}
	return b.Event
}

// resign edits a PDU and signs it again with n's key.
func (n *node) resign(t *testing.T, raw json.RawMessage, edit func(m map[string]any)) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "signatures")
	delete(m, "hashes")
	delete(m, "unsigned")
	edit(m)
	js, _ := json.Marshal(m)
	p, err := rooms.ParsePDU(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sign(id.RoomV11, n.name, id.KeyID(n.key.ID), n.key.Private); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func eventID(t *testing.T, raw json.RawMessage) id.EventID {
	t.Helper()
	p, err := rooms.ParsePDU(raw)
	if err != nil {
		t.Fatal(err)
	}
	evID, err := p.GetEventID(id.RoomV11)
	if err != nil {
		t.Fatal(err)
	}
	return evID
}

func sendRaw(nw *network, from, to, txnID string, body []byte) (*federation.RespSendTransaction, error) {
	var resp federation.RespSendTransaction
	err := nw.do(from, to, http.MethodPut, "/_matrix/federation/v1/send/"+url.PathEscape(txnID), nil, body, &resp)
	return &resp, err
}

func txnBody(origin string, pdus ...json.RawMessage) []byte {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	b, _ := json.Marshal(map[string]any{"origin": origin, "origin_server_ts": 1, "pdus": pdus})
	return b
}

// TestSendBadInput: every kind of bad input from the network is refused
// or rejected, counted, and never stored as accepted; a good PDU in the
// same transaction as bad ones is accepted.
func TestSendBadInput(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			nw, a, b, room := joinedPair(t, dialect)
			empty := ""

			good := b.built(t, room, bob, "m.room.message", nil, msg("good"))
			badSig := b.resign(t, b.built(t, room, bob, "m.room.message", nil, msg("x")), func(m map[string]any) {})
			badSig = json.RawMessage(strings.Replace(string(badSig), `"body":"x"`, `"body":"y"`, 1)) // hash mismatch: redacted
			var forgedSig map[string]any
			_ = json.Unmarshal(b.built(t, room, bob, "m.room.message", nil, msg("forged")), &forgedSig)
			forgedSig["signatures"] = map[string]any{hubB: map[string]string{"ed25519:" + strings.TrimPrefix(b.key.ID, "ed25519:"): "AAAA"}}
			forged, _ := json.Marshal(forgedSig)
			otherOrigin := b.resign(t, b.built(t, room, bob, "m.room.message", nil, msg("z")), func(m map[string]any) {
				m["sender"] = string(alice)
			})
			powerGrab := b.resign(t, b.built(t, room, bob, "m.room.message", nil, msg("p")), func(m map[string]any) {
				m["type"] = "m.room.power_levels"
				m["state_key"] = empty
				m["content"] = map[string]any{"users": map[string]int{string(bob): 100}}
			})
			neverPrev := b.resign(t, b.built(t, room, bob, "m.room.message", nil, msg("n")), func(m map[string]any) {
				m["prev_events"] = []string{"$nowhere"}
			})
			unknownRoom := b.resign(t, b.built(t, room, bob, "m.room.message", nil, msg("u")), func(m map[string]any) {
				m["room_id"] = "!unknown:b.test"
			})
			before := a.state(t, room)

			resp, err := sendRaw(nw, hubB, hubA, "t1", txnBody(hubB, good, forged, otherOrigin, powerGrab, neverPrev, unknownRoom,
				json.RawMessage(`{"type":"m.room.message"}`)))
			if err != nil {
				t.Fatal(err)
			}
			want := map[id.EventID]bool{eventID(t, good): true, eventID(t, forged): false, eventID(t, otherOrigin): false,
				eventID(t, powerGrab): false, eventID(t, neverPrev): false}
			for evID, ok := range want {
				r, found := resp.PDUs[evID]
				if !found {
					t.Errorf("no result for %s", evID)
					continue
				}
				if ok != (r.Error == "") {
					t.Errorf("%s: result %q, want ok=%v", evID, r.Error, ok)
				}
				if !ok && a.has(t, evID) {
					t.Errorf("%s refused but served", evID)
				}
			}
			if len(resp.PDUs) != 7 {
				t.Errorf("%d results, want one per PDU (7)", len(resp.PDUs))
			}
			if !a.has(t, eventID(t, good)) {
				t.Error("the good PDU was not accepted")
			}
			if f, ok := a.flags(t, eventID(t, powerGrab)); !ok || f&store.FlagRejected == 0 {
				t.Errorf("power grab: flags %v stored %v; want rejected", f, ok)
			}
			if _, ok := a.flags(t, eventID(t, neverPrev)); ok {
				t.Error("an event whose prev_events never resolve was stored")
			}
			// A tampered body keeps a valid signature over the redacted
			// form: accepted, redacted.
			if resp, err := sendRaw(nw, hubB, hubA, "t-hash", txnBody(hubB, badSig)); err != nil || resp.PDUs[eventID(t, badSig)].Error != "" {
				t.Errorf("hash mismatch: %+v, %v", resp, err)
			}
			after := a.state(t, room)
			if after[store.StateKey{Type: "m.room.power_levels"}] != before[store.StateKey{Type: "m.room.power_levels"}] {
				t.Error("the power grab changed the power levels")
			}

			// Replay: the same transaction ID is answered as the first time
			// and changes nothing.
			replay, err := sendRaw(nw, hubB, hubA, "t1", txnBody(hubB))
			if err != nil || len(replay.PDUs) != 7 {
				t.Errorf("replayed txn: %d results, %v; want the first answer", len(replay.PDUs), err)
			}
			if a.count("txn_replayed") != 1 {
				t.Errorf("txn_replayed = %d, want 1", a.count("txn_replayed"))
			}
			// The same ID from another origin is another transaction.
			nw.allowed["c.test"] = true
			if r, err := sendRaw(nw, "c.test", hubA, "t1", txnBody("c.test")); err != nil || len(r.PDUs) != 0 {
				t.Errorf("same txn ID from another origin: %+v, %v", r, err)
			}

			// Refused whole.
			many := make([]json.RawMessage, MaxTxnPDUs+1)
			for i := range many {
				many[i] = good
			}
			for _, c := range []struct {
				name string
				body []byte
				code string
			}{
				{"origin of another server", txnBody(hubA, good), "M_FORBIDDEN"},
				{"too many PDUs", txnBody(hubB, many...), "M_TOO_LARGE"},
				{"malformed JSON", []byte(`{"origin":"b.test","pdus":[`), "M_NOT_JSON"},
				{"PDU not an object", []byte(`{"origin":"b.test","pdus":[1]}`), "M_NOT_JSON"},
				{"no origin", []byte(`{"pdus":[]}`), "M_NOT_JSON"},
			} {
				_, err := sendRaw(nw, hubB, hubA, "bad-"+c.name, c.body)
				var re mautrix.RespError
				if !asRespError(err, &re) || re.ErrCode != c.code {
					t.Errorf("%s: %v, want %s", c.name, err, c.code)
				}
			}
			huge := fmt.Sprintf(`{"origin":"b.test","pdus":[],"x":%q}`, strings.Repeat("a", MaxTxnBytes))
			if _, err := sendRaw(nw, hubB, hubA, "huge", []byte(huge)); err == nil {
				t.Error("an oversized transaction was accepted")
			}
			// A server that dropped out of the list: its PDUs are refused.
			nw.allowed[hubB] = false
			late := b.built(t, room, bob, "m.room.message", nil, msg("after removal"))
			r, err := sendRaw(nw, hubB, hubA, "t-removed", txnBody(hubB, late))
			if err != nil || r.PDUs[eventID(t, late)].Error == "" || a.has(t, eventID(t, late)) {
				t.Errorf("PDU of a server out of the list: %+v, %v", r, err)
			}
			if a.count("pdu_server_refused") == 0 {
				t.Error("refusal not counted")
			}
		})
	}
}

func asRespError(err error, out *mautrix.RespError) bool {
	re, ok := err.(mautrix.RespError)
	if ok {
		*out = re
	}
	return ok
}

// TestMissingEvents: events whose prev_events are unknown are completed
// with get_missing_events, or, when the peer cannot answer it, with the
// state at the missing prev_event (state_ids) and the events fetched as
// outliers.
func TestMissingEvents(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			nw, a, b, room := joinedPair(t, dialect)
			empty := ""

			// Three messages from B; the first two are lost on the way.
			lost := map[id.EventID]bool{}
			b.drop = func(e store.Event) bool { return lost[id.EventID(e.EventID)] }
			m1 := b.send(t, room, bob, "m.room.message", nil, msg("1"))
			m2 := b.send(t, room, bob, "m.room.message", nil, msg("2"))
			lost[m1], lost[m2] = true, true
			m3 := b.send(t, room, bob, "m.room.message", nil, msg("3"))
			nw.flush()
			for _, m := range []id.EventID{m1, m2, m3} {
				if !a.has(t, m) {
					t.Errorf("%s not on A after get_missing_events", m)
				}
			}
			sameState(t, "after get_missing_events", room, a, b)

			// Now B cannot answer get_missing_events: A takes the state at
			// the missing event instead.
			b.noMissing = true
			a.send(t, room, alice, "m.room.power_levels", &empty, map[string]any{
				"users": map[string]int{string(alice): 100, string(bob): 50}, "state_default": 50,
				"events": map[string]int{"m.room.power_levels": 100},
			})
			nw.flush()
			tp := b.send(t, room, bob, "m.room.topic", &empty, map[string]string{"topic": "set on B"})
			m4 := b.send(t, room, bob, "m.room.message", nil, msg("4"))
			lost[tp], lost[m4] = true, true
			m5 := b.send(t, room, bob, "m.room.message", nil, msg("5"))
			nw.flush()
			if !a.has(t, m5) {
				t.Fatal("m5 not accepted on A through state_ids")
			}
			if f, ok := a.flags(t, m4); !ok || f != store.FlagOutlier {
				t.Errorf("m4 on A: flags %v stored %v; want an outlier", f, ok)
			}
			if got := a.state(t, room)[store.StateKey{Type: "m.room.topic"}]; got != string(tp) {
				t.Errorf("topic on A = %s, want B's %s (from the fetched state)", got, tp)
			}
			if a.count("pdu_missing_prev") == 0 {
				t.Error("missing prev_events not counted")
			}
			// m4 arrives after all: the outlier takes its place in the DAG
			// (as history), with tp fetched through get_missing_events.
			b.noMissing = false
			var m4raw json.RawMessage
			if evs, err := b.st.EventsByIDAny(t.Context(), []string{string(m4)}); err != nil || len(evs) != 1 {
				t.Fatal(err)
			} else {
				m4raw = evs[0].JSON
			}
			resp, err := sendRaw(nw, hubB, hubA, "late-m4", txnBody(hubB, m4raw))
			if err != nil || resp.PDUs[m4].Error != "" {
				t.Fatalf("late m4: %+v, %v", resp, err)
			}
			if !a.has(t, m4) || !a.has(t, tp) {
				t.Error("the promoted outliers are not served")
			}
			if got := a.state(t, room)[store.StateKey{Type: "m.room.topic"}]; got != string(tp) {
				t.Errorf("topic on A after the promotion = %s, want %s", got, tp)
			}
		})
	}
}

// TestReadingEndpoints: only servers in the room are answered; asks are
// bounded.
func TestReadingEndpoints(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			nw, a, b, room := joinedPair(t, dialect)
			var last id.EventID
			for i := range 30 {
				last = a.send(t, room, alice, "m.room.message", nil, msg(fmt.Sprint(i)))
			}
			nw.flush()
			nw.allowed["c.test"] = true

			// state_ids / state / event / event_auth / backfill for B.
			var ids federation.RespGetStateIDs
			if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/state_ids/"+seg(room), url.Values{"event_id": {string(last)}}, nil, &ids); err != nil {
				t.Fatal(err)
			}
			if len(ids.PDUs) < 6 || len(ids.AuthChain) == 0 {
				t.Errorf("state_ids: %d state, %d auth chain", len(ids.PDUs), len(ids.AuthChain))
			}
			var st federation.RespGetState
			if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/state/"+seg(room), url.Values{"event_id": {string(last)}}, nil, &st); err != nil || len(st.PDUs) != len(ids.PDUs) {
				t.Errorf("state: %d events, %v", len(st.PDUs), err)
			}
			var ev federation.RespBackfill
			if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/event/"+seg(last), nil, nil, &ev); err != nil || len(ev.PDUs) != 1 {
				t.Errorf("event: %v", err)
			}
			var ea federation.RespGetEventAuthChain
			if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/event_auth/"+seg(room)+"/"+seg(last), nil, nil, &ea); err != nil || len(ea.AuthChain) == 0 {
				t.Errorf("event_auth: %d, %v", len(ea.AuthChain), err)
			}
			var bf federation.RespBackfill
			if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/backfill/"+seg(room), url.Values{"v": {string(last)}, "limit": {"10"}}, nil, &bf); err != nil || len(bf.PDUs) != 10 {
				t.Errorf("backfill: %d events, %v; want 10", len(bf.PDUs), err)
			}
			// get_missing_events: a huge limit is capped; a huge ask refused.
			var gme federation.RespGetMissingEvents
			body, _ := json.Marshal(map[string]any{"earliest_events": []string{}, "latest_events": []string{string(last)}, "limit": 1000000})
			if err := nw.do(hubB, hubA, http.MethodPost, "/_matrix/federation/v1/get_missing_events/"+seg(room), nil, body, &gme); err != nil || len(gme.Events) > MaxMissingEvents || len(gme.Events) == 0 {
				t.Errorf("get_missing_events: %d events, %v", len(gme.Events), err)
			}
			latest := make([]string, 1000)
			for i := range latest {
				latest[i] = string(last)
			}
			body, _ = json.Marshal(map[string]any{"earliest_events": []string{}, "latest_events": latest, "limit": 10})
			if err := nw.do(hubB, hubA, http.MethodPost, "/_matrix/federation/v1/get_missing_events/"+seg(room), nil, body, nil); err == nil {
				t.Error("a huge get_missing_events ask was answered")
			}

			// c.test is in the list but not in the room: nothing.
			for _, p := range []string{
				"/_matrix/federation/v1/state_ids/" + seg(room) + "?event_id=" + url.QueryEscape(string(last)),
				"/_matrix/federation/v1/state/" + seg(room) + "?event_id=" + url.QueryEscape(string(last)),
				"/_matrix/federation/v1/event/" + seg(last),
				"/_matrix/federation/v1/event_auth/" + seg(room) + "/" + seg(last),
				"/_matrix/federation/v1/backfill/" + seg(room) + "?limit=10&v=" + url.QueryEscape(string(last)),
			} {
				path, q, _ := strings.Cut(p, "?")
				vals, _ := url.ParseQuery(q)
				var re mautrix.RespError
				if err := nw.do("c.test", hubA, http.MethodGet, path, vals, nil, nil); !asRespError(err, &re) || re.StatusCode != http.StatusForbidden {
					t.Errorf("%s for a server not in the room: %v, want 403", path, err)
				}
			}

			// Queries.
			var prof struct {
				DisplayName string `json:"displayname"`
			}
			if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/query/profile", url.Values{"user_id": {string(alice)}}, nil, &prof); err != nil || prof.DisplayName != "alice of a.test" {
				t.Errorf("query/profile: %+v, %v", prof, err)
			}
			if err := a.st.PutAlias(t.Context(), "#room:a.test", string(room), string(alice)); err != nil {
				t.Fatal(err)
			}
			var dir mautrix.RespAliasResolve
			if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/query/directory", url.Values{"room_alias": {"#room:a.test"}}, nil, &dir); err != nil || dir.RoomID != room || len(dir.Servers) != 2 {
				t.Errorf("query/directory: %+v, %v", dir, err)
			}
			_ = b
		})
	}
}

// TestMembershipRefusals: make_join for a user of another server than the
// origin, or one the trust space refuses; invites of unknown or refused
// users.
func TestMembershipRefusals(t *testing.T) {
	nw, a, b, room := joinedPair(t, "sqlite")
	carolB := id.UserID("@carol:b.test")
	nw.refusedUsers[string(carolB)] = true
	var re mautrix.RespError
	if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/make_join/"+seg(room)+"/"+seg(alice), url.Values{"ver": {"11"}}, nil, nil); !asRespError(err, &re) || re.StatusCode != http.StatusForbidden {
		t.Errorf("make_join for a user of another server: %v", err)
	}
	if _, err := b.in.JoinRoom(t.Context(), carolB, string(room), []string{hubA}); err == nil {
		t.Error("a user the trust space refuses joined")
	}
	if got := a.membership(t, room, carolB); got != "" {
		t.Errorf("refused user's membership on A = %q", got)
	}
	if err := nw.do(hubB, hubA, http.MethodGet, "/_matrix/federation/v1/make_join/"+seg(room)+"/"+seg(bob), url.Values{"ver": {"1"}}, nil, nil); !asRespError(err, &re) || re.ErrCode != "M_INCOMPATIBLE_ROOM_VERSION" {
		t.Errorf("make_join without the room's version: %v", err)
	}
	// Invites: a refused local invitee, an invitee without an account.
	room2 := b.createRoom(t, bob, id.RoomV11, rooms.PresetPrivateChat)
	nw.refusedUsers["@dave:a.test"] = true
	if _, err := b.in.Invite(t.Context(), bob, room2, "@dave:a.test", ""); err == nil {
		t.Error("invite of a refused user went through")
	}
	if _, err := b.in.Invite(t.Context(), bob, room2, "@nobody:a.test", ""); err == nil {
		t.Error("invite of a user without an account went through")
	}
	if got := a.membership(t, room2, "@nobody:a.test"); got != "" {
		t.Errorf("nobody's membership on A = %q", got)
	}
}

// TestEDUs: receipts of users of the origin who are in the room are
// stored; EDUs speaking for users of another server, or for rooms they
// are not in, are dropped and counted.
func TestEDUs(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			nw, a, _, room := joinedPair(t, dialect)
			m := a.send(t, room, alice, "m.room.message", nil, msg("read me"))
			receipt := func(user id.UserID, r id.RoomID) json.RawMessage {
				b, _ := json.Marshal(map[string]any{"edu_type": "m.receipt", "content": map[string]any{
					string(r): map[string]any{"m.read": map[string]any{string(user): map[string]any{
						"event_ids": []string{string(m)}, "data": map[string]any{"ts": 1}}}}}})
				return b
			}
			body, _ := json.Marshal(map[string]any{"origin": hubB, "pdus": []any{}, "edus": []json.RawMessage{
				receipt(bob, room),             // stored
				receipt(alice, room),           // alice is not of b.test: dropped
				receipt("@carol:b.test", room), // not in the room: dropped
				json.RawMessage(`{"edu_type":"m.typing","content":{"room_id":"x","user_id":"@alice:a.test","typing":true}}`),
				json.RawMessage(`{"edu_type":"m.unknown","content":{}}`),
			}})
			if _, err := sendRaw(nw, hubB, hubA, "edus", body); err != nil {
				t.Fatal(err)
			}
			rs, err := a.st.ReceiptsSince(t.Context(), []string{string(room)}, 0, 1<<62)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 || rs[0].UserID != string(bob) || rs[0].EventID != string(m) {
				t.Errorf("receipts on A = %+v, want bob's only", rs)
			}
			// Bob's receipt; alice's, carol's and the forged typing refused.
			if a.count("edu_m.receipt") != 1 || a.count("edu_refused") != 3 || a.count("edu_unknown") != 1 {
				t.Errorf("counts: receipt %d, refused %d, unknown %d; want 1, 3, 1",
					a.count("edu_m.receipt"), a.count("edu_refused"), a.count("edu_unknown"))
			}
		})
	}
}
