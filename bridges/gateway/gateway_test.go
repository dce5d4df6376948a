package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gorilla/websocket"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
)

// TestFrameErrors: every kind of bad frame gets a typed error frame, the
// connection stays open, and schema errors name the field.
func TestFrameErrors(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.Limits.MaxFrameBytes = 4096 })
	c := e.dial(t)

	// Before the hello.
	c.send(map[string]any{"type": "bind", "id": "early", "idnat": hubtest.Localpart("alice")})
	if f := c.mustNext(); f.Code != "EIMIS_HELLO_REQUIRED" || f.ID != "early" {
		t.Fatalf("request before hello: %s", f.raw)
	}
	c.send(map[string]any{"type": "hello", "protocol": 2, "token": e.token})
	if f := c.mustNext(); f.Code != "EIMIS_UNSUPPORTED_VERSION" || f.Field != "/protocol" {
		t.Fatalf("protocol 2: %s", f.raw)
	}
	w := c.hello(e.token) // the same connection may try again
	var welcome struct {
		BridgeID string `json:"bridge_id"`
		Operator string `json:"operator"`
		Resumed  bool   `json:"resumed"`
		Limits   struct {
			MaxFrameBytes int `json:"max_frame_bytes"`
		} `json:"limits"`
	}
	_ = json.Unmarshal(w.raw, &welcome)
	if welcome.BridgeID != "acme-app" || welcome.Operator != "acme" || welcome.Resumed || welcome.Limits.MaxFrameBytes != 4096 {
		t.Fatalf("welcome: %s", w.raw)
	}

	alice := hubtest.Localpart("alice")
	for _, tc := range []struct {
		name      string
		frame     string
		code, fld string
		id        string
	}{
		{"not json", `{"type":`, "EIMIS_BAD_FRAME", "", ""},
		{"not an object", `[1,2]`, "EIMIS_BAD_FRAME", "", ""},
		{"no type", `{"id":"1"}`, "EIMIS_INVALID_FIELD", "/type", "1"},
		{"unknown type", `{"type":"teleport","id":"2"}`, "EIMIS_UNKNOWN_TYPE", "/type", "2"},
		{"hub-to-bridge type", `{"type":"welcome","id":"3"}`, "EIMIS_UNKNOWN_TYPE", "/type", "3"},
		{"missing field", `{"type":"send","id":"4","user":"` + alice + `","room_id":"!r:hub.test","txn_id":"t","msgtype":"m.text"}`,
			"EIMIS_INVALID_FIELD", "/body", "4"},
		{"misspelt field", `{"type":"bind","id":"5","idnat":"` + alice + `","idant":"x"}`, "EIMIS_INVALID_FIELD", "/idant", "5"},
		{"wrong type", `{"type":"typing","id":"6","user":"` + alice + `","room_id":"!r:hub.test","typing":"yes"}`,
			"EIMIS_INVALID_FIELD", "/typing", "6"},
		{"bad idnat", `{"type":"bind","id":"7","idnat":"12345"}`, "EIMIS_INVALID_FIELD", "/idnat", "7"},
		{"bad invitee", `{"type":"create_room","id":"8","user":"` + alice + `","invite":["` + alice + `","nobody"]}`,
			"EIMIS_INVALID_FIELD", "/invite/1", "8"},
		{"media without url", `{"type":"send","id":"9","user":"` + alice + `","room_id":"!r:hub.test","txn_id":"t","msgtype":"m.image","body":"x.png"}`,
			"EIMIS_INVALID_FIELD", "/url", "9"},
		{"url on text", `{"type":"send","id":"10","user":"` + alice + `","room_id":"!r:hub.test","txn_id":"t","msgtype":"m.text","body":"x","url":"mxc://a/b"}`,
			"EIMIS_INVALID_FIELD", "/url", "10"},
		{"html without format", `{"type":"send","id":"11","user":"` + alice + `","room_id":"!r:hub.test","txn_id":"t","msgtype":"m.text","body":"x","formatted_body":"<b>x</b>"}`,
			"EIMIS_INVALID_FIELD", "/format", "11"},
		{"bad cursor", `{"type":"ack","cursor":"0"}`, "EIMIS_INVALID_FIELD", "/cursor", ""},
		{"never delivered cursor", `{"type":"ack","cursor":"999999"}`, "EIMIS_BAD_CURSOR", "/cursor", ""},
		{"second hello", `{"type":"hello","protocol":1,"token":"` + e.token + `"}`, "EIMIS_DUPLICATE_HELLO", "/type", ""},
		{"not bound", `{"type":"send","id":"12","user":"` + alice + `","room_id":"!r:hub.test","txn_id":"t","msgtype":"m.text","body":"x"}`,
			"EIMIS_NOT_BOUND", "/user", "12"},
		{"too large", `{"type":"bind","id":"13","idnat":"` + strings.Repeat("8", 5000) + `"}`, "EIMIS_FRAME_TOO_LARGE", "", ""},
	} {
		c.sendRaw([]byte(tc.frame))
		f := c.mustNext()
		if f.Type != "error" || f.Code != tc.code || f.Field != tc.fld || f.ID != tc.id {
			t.Errorf("%s: got %s; want code %s, field %q, id %q", tc.name, f.raw, tc.code, tc.fld, tc.id)
		}
		if f.Message == "" {
			t.Errorf("%s: error without a message", tc.name)
		}
	}
	// After all that the connection still works.
	var b struct {
		UserID string `json:"user_id"`
	}
	c.mustResult(map[string]any{"type": "bind", "id": "ok", "idnat": alice}, &b)
	if b.UserID != "@"+alice+":"+server {
		t.Fatalf("bind after errors: %+v", b)
	}

	// A frame far over the limit closes the connection.
	// The hub may close before it has read the whole frame, so the write
	// itself may fail with a reset: what matters is what was received.
	_ = c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"bind","id":"x","idnat":"`+strings.Repeat("8", 20*4096)+`"}`))
	fs, why := c.expectClose()
	if why != "EIMIS_FRAME_TOO_LARGE" || len(fs) != 1 || fs[0].Code != "EIMIS_FRAME_TOO_LARGE" {
		t.Fatalf("gross frame: frames %v, close %q", fs, why)
	}
}

// TestRefusedConnections: a bad token, a revoked bridge and a suspended
// operator never get a welcome.
func TestRefusedConnections(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	for _, tc := range []struct {
		name, token, code string
	}{
		{"bad token", "eimisb_not-a-real-token-at-all", "EIMIS_BAD_TOKEN"},
	} {
		c := e.dial(t)
		c.send(map[string]any{"type": "hello", "protocol": 1, "token": tc.token})
		fs, why := c.expectClose()
		if why != tc.code || len(fs) != 1 || fs[0].Code != tc.code {
			t.Errorf("%s: frames %v, close %q", tc.name, fs, why)
		}
	}

	// A revoked bridge.
	tok, _, err := gateway.AddBridge(ctx, e.st, "acme-old", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.RevokeBridge(ctx, "acme-old"); err != nil {
		t.Fatal(err)
	}
	c := e.dial(t)
	c.send(map[string]any{"type": "hello", "protocol": 1, "token": tok})
	if _, why := c.expectClose(); why != "EIMIS_BRIDGE_REVOKED" {
		t.Errorf("revoked bridge: close %q", why)
	}

	// A suspended operator.
	if _, err := e.ops.Suspend(ctx, "acme", "incident 42", "test"); err != nil {
		t.Fatal(err)
	}
	c = e.dial(t)
	c.send(map[string]any{"type": "hello", "protocol": 1, "token": e.token})
	fs, why := c.expectClose()
	if why != "EIMIS_OPERATOR_SUSPENDED" || len(fs) != 1 || !strings.Contains(fs[0].Message, "suspended") {
		t.Errorf("suspended operator: frames %v, close %q", fs, why)
	}
	// Reactivated, it connects again.
	if _, err := e.ops.Reactivate(ctx, "acme", "", "test"); err != nil {
		t.Fatal(err)
	}
	e.dial(t).hello(e.token)
}

// TestOperatorSuspendedClosesSocket: suspending the operator closes its
// live sockets at once, after a final operator_suspended push.
func TestOperatorSuspendedClosesSocket(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.hello(e.token)
	start := time.Now()
	if _, err := e.ops.Suspend(t.Context(), "acme", "contract review", "test"); err != nil {
		t.Fatal(err)
	}
	fs, why := c.expectClose()
	if len(fs) < 1 || fs[0].Type != "operator_suspended" || fs[0].Status != "suspended" || fs[0].Code != "EIMIS_OPERATOR_SUSPENDED" {
		t.Fatalf("frames before close: %v", fs)
	}
	if why != "EIMIS_OPERATOR_SUSPENDED" {
		t.Errorf("close reason %q", why)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closing took %v; the hook must act at once", d)
	}
}

// TestBindRefusals: the directory decides who may be bound, with the
// policy's code and reason.
func TestBindRefusals(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.hello(e.token)
	mallory := hubtest.Localpart("mallory")
	unknown := "810000000009" // a valid-looking idNat nobody has
	for _, tc := range []struct {
		idnat, code, reason string
	}{
		{mallory, "EIMIS_INACTIVE_PRACTITIONER", "practitioner " + mallory + " is not active in the health directory"},
		{unknown, "EIMIS_NOT_IN_DIRECTORY", "practitioner " + unknown + " is not in the health directory"},
	} {
		f, _ := c.request(map[string]any{"type": "bind", "id": tc.idnat, "idnat": tc.idnat})
		if f.Type != "error" || f.Code != tc.code || f.Message != tc.reason || f.Field != "/idnat" {
			t.Errorf("bind %s: %s", tc.idnat, f.raw)
		}
	}
	if users, _ := e.st.BridgeUsers(t.Context(), "acme-app"); len(users) != 0 {
		t.Fatalf("refused binds left bindings: %v", users)
	}
	if _, err := e.st.GetAccount(t.Context(), mallory); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused bind created an account: %v", err)
	}
}

// TestPSCProof: a hub configured to require Pro Santé Connect proofs
// refuses binds without one, and checks the one given.
func TestPSCProof(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) {
		c.Consent = consent.New(consent.Config{Store: c.Store, BridgeRequirePSC: true,
			VerifyPSC: func(_ context.Context, idNat, proof string) error {
				if proof != "proof-of-"+idNat {
					return errors.New("bad proof")
				}
				return nil
			}})
	})
	c := e.dial(t)
	c.hello(e.token)
	alice := hubtest.Localpart("alice")
	for _, tc := range []struct{ proof, code string }{{"", "EIMIS_PSC_PROOF_REQUIRED"}, {"forged", "EIMIS_PSC_PROOF_INVALID"}} {
		req := map[string]any{"type": "bind", "id": "b" + tc.proof, "idnat": alice}
		if tc.proof != "" {
			req["psc_proof"] = tc.proof
		}
		if f, _ := c.request(req); f.Code != tc.code || f.Field != "/psc_proof" {
			t.Errorf("proof %q: %s", tc.proof, f.raw)
		}
	}
	c.mustResult(map[string]any{"type": "bind", "id": "ok", "idnat": alice, "psc_proof": "proof-of-" + alice}, nil)
}

// TestSlowConsumer: a bridge that stops acknowledging gets at most
// MaxUnacked events, then is disconnected with a reason; the backlog
// stays, and a new connection gets it from the last acknowledgement.
func TestSlowConsumer(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) {
		c.Limits.MaxUnacked = 3
		c.Limits.StallTimeout = 700 * time.Millisecond
	})
	c := e.dial(t)
	c.hello(e.token)
	alice := hubtest.Localpart("alice")
	c.mustResult(map[string]any{"type": "bind", "id": "b", "idnat": alice}, nil)
	var room struct {
		RoomID string `json:"room_id"`
	}
	c.mustResult(map[string]any{"type": "create_room", "id": "c", "user": alice, "name": "Backlog"}, &room)
	for i := range 8 {
		c.mustResult(map[string]any{"type": "send", "id": fmt.Sprint("s", i), "user": alice, "room_id": room.RoomID,
			"txn_id": fmt.Sprint("t", i), "msgtype": "m.text", "body": fmt.Sprint("m", i)}, nil)
	}
	fs, why := c.expectClose()
	events := 0
	for _, f := range fs {
		if f.Type == "event" {
			events++
		}
	}
	if why != "EIMIS_SLOW_CONSUMER" || events > 3 {
		t.Fatalf("slow bridge: %d events, close %q", events, why)
	}

	// Reconnect and acknowledge everything: the whole room comes, in order.
	c = e.dial(t)
	w := c.hello(e.token)
	if !strings.Contains(string(w.raw), `"resumed":true`) {
		t.Errorf("welcome after a stall: %s", w.raw)
	}
	var bodies []string
	for len(bodies) < 8 {
		f := c.mustNext()
		if f.Type != "event" {
			continue
		}
		var content struct {
			Body string `json:"body"`
		}
		_ = json.Unmarshal(f.Event.Content, &content)
		if f.Event.Type == "m.room.message" {
			bodies = append(bodies, content.Body)
		}
		c.send(map[string]any{"type": "ack", "cursor": f.Cursor})
	}
	if got := strings.Join(bodies, ","); got != "m0,m1,m2,m3,m4,m5,m6,m7" {
		t.Fatalf("backlog after reconnecting: %s", got)
	}
}

// TestRequests exercises every request once through a raw connection.
func TestRequests(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.hello(e.token)
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")
	for _, u := range []string{alice, bob} {
		c.mustResult(map[string]any{"type": "bind", "id": "b" + u, "idnat": u}, nil)
	}
	var room struct {
		RoomID string `json:"room_id"`
	}
	c.mustResult(map[string]any{"type": "create_room", "id": "c", "user": alice, "name": "Ward 3", "topic": "Handover",
		"invite": []string{bob}, "is_direct": false}, &room)
	c.mustResult(map[string]any{"type": "join", "id": "j", "user": bob, "room_id": room.RoomID}, nil)
	var sent struct {
		EventID string `json:"event_id"`
	}
	c.mustResult(map[string]any{"type": "send", "id": "s", "user": alice, "room_id": room.RoomID, "txn_id": "t1",
		"msgtype": "m.text", "body": "BP 12/8", "format": "org.matrix.custom.html", "formatted_body": "<b>BP</b> 12/8"}, &sent)
	c.mustResult(map[string]any{"type": "send", "id": "r", "user": bob, "room_id": room.RoomID, "txn_id": "t2",
		"msgtype": "m.text", "body": "ok", "reply_to": sent.EventID}, nil)
	f, _ := c.request(map[string]any{"type": "send", "id": "r2", "user": bob, "room_id": room.RoomID, "txn_id": "t3",
		"msgtype": "m.text", "body": "?", "reply_to": "$nope"})
	if f.Code != "EIMIS_UNKNOWN_EVENT" || f.Field != "/reply_to" {
		t.Errorf("reply to an unknown event: %s", f.raw)
	}
	c.mustResult(map[string]any{"type": "edit", "id": "e", "user": alice, "room_id": room.RoomID, "txn_id": "t4",
		"event_id": sent.EventID, "body": "BP 12/7"}, nil)
	if f, _ := c.request(map[string]any{"type": "edit", "id": "e2", "user": bob, "room_id": room.RoomID, "txn_id": "t5",
		"event_id": sent.EventID, "body": "hacked"}); f.Code != "EIMIS_FORBIDDEN" {
		t.Errorf("editing someone else's message: %s", f.raw)
	}
	c.mustResult(map[string]any{"type": "read_receipt", "id": "rr", "user": bob, "room_id": room.RoomID, "event_id": sent.EventID}, nil)
	c.mustResult(map[string]any{"type": "typing", "id": "ty", "user": bob, "room_id": room.RoomID, "typing": true, "timeout_ms": 5000}, nil)
	var info struct {
		Name    string `json:"name"`
		Topic   string `json:"topic"`
		Members []struct {
			UserID      string `json:"user_id"`
			Membership  string `json:"membership"`
			DisplayName string `json:"display_name"`
		} `json:"members"`
	}
	c.mustResult(map[string]any{"type": "room_info", "id": "ri", "user": bob, "room_id": room.RoomID}, &info)
	if info.Name != "Ward 3" || info.Topic != "Handover" || len(info.Members) != 2 || info.Members[1].DisplayName != "Bob Test - Infirmier" {
		t.Errorf("room info: %+v", info)
	}
	var found struct {
		Results []struct {
			IDNat     string   `json:"idnat"`
			Reachable bool     `json:"reachable"`
			Profs     []string `json:"professions"`
		} `json:"results"`
	}
	c.mustResult(map[string]any{"type": "directory_search", "id": "ds", "query": "carol test", "limit": 5}, &found)
	if len(found.Results) != 1 || found.Results[0].IDNat != hubtest.Localpart("carol") || found.Results[0].Reachable {
		t.Errorf("directory search: %+v", found)
	}
	// Inviting a practitioner without an account creates it, so the
	// invite waits for them.
	carol := hubtest.Localpart("carol")
	c.mustResult(map[string]any{"type": "invite", "id": "i", "user": alice, "room_id": room.RoomID, "invitee": carol}, nil)
	if _, err := e.st.GetAccount(t.Context(), carol); err != nil {
		t.Errorf("invitee's account: %v", err)
	}
	if f, _ := c.request(map[string]any{"type": "invite", "id": "i2", "user": alice, "room_id": room.RoomID,
		"invitee": hubtest.Localpart("mallory")}); f.Code != "EIMIS_INACTIVE_PRACTITIONER" || f.Field != "/invitee" {
		t.Errorf("inviting an inactive practitioner: %s", f.raw)
	}
	if f, _ := c.request(map[string]any{"type": "upload", "id": "u", "user": alice, "content_type": "image/png", "data": "aGVsbG8="}); f.Code != "EIMIS_UNSUPPORTED" {
		t.Errorf("upload without a media store: %s", f.raw)
	}
	c.mustResult(map[string]any{"type": "leave", "id": "l", "user": bob, "room_id": room.RoomID, "reason": "end of shift"}, nil)
	if f, _ := c.request(map[string]any{"type": "typing", "id": "ty2", "user": bob, "room_id": room.RoomID, "typing": true}); f.Code != "EIMIS_FORBIDDEN" {
		t.Errorf("typing after leaving: %s", f.raw)
	}
	var ub struct {
		Unbound bool `json:"unbound"`
	}
	c.mustResult(map[string]any{"type": "unbind", "id": "ub", "idnat": bob}, &ub)
	if !ub.Unbound {
		t.Error("unbind reported no binding")
	}
	if f, _ := c.request(map[string]any{"type": "join", "id": "j2", "user": bob, "room_id": room.RoomID}); f.Code != "EIMIS_NOT_BOUND" {
		t.Errorf("acting for an unbound user: %s", f.raw)
	}
}

// TestAddBridge: bridge IDs follow the operator ID syntax; a bridge needs
// an existing, non-revoked operator; tokens are stored hashed.
func TestAddBridge(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	if _, _, err := gateway.AddBridge(ctx, e.st, "Bad ID", "acme"); !errors.Is(err, gateway.ErrBadBridgeID) {
		t.Errorf("bad ID: %v", err)
	}
	if _, _, err := gateway.AddBridge(ctx, e.st, "x", "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown operator: %v", err)
	}
	if _, _, err := gateway.AddBridge(ctx, e.st, "acme-app", "acme"); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := e.ops.Add(ctx, operators.Operator{ID: "gone", Name: "Gone", ServerNames: []string{"gone.example"},
		Contact: "a@gone.example"}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ops.Revoke(ctx, "gone", "closed", "test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := gateway.AddBridge(ctx, e.st, "gone-app", "gone"); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("revoked operator: %v", err)
	}
	tok, b, err := gateway.AddBridge(ctx, e.st, "acme.staging", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "eimisb_") || strings.Contains(string(b.TokenHash), tok) {
		t.Errorf("token %q, stored %x", tok, b.TokenHash)
	}
	if got, err := e.st.BridgeByTokenHash(ctx, gateway.HashToken(tok)); err != nil || got.ID != "acme.staging" {
		t.Errorf("look-up by token: %v %v", got, err)
	}
}

// TestReplaced: a second connection of the same bridge takes over.
func TestReplaced(t *testing.T) {
	e := newEnv(t, nil)
	c1 := e.dial(t)
	c1.hello(e.token)
	c2 := e.dial(t)
	c2.hello(e.token)
	if _, why := c1.expectClose(); why != "EIMIS_REPLACED" {
		t.Fatalf("first connection closed with %q", why)
	}
	c2.mustResult(map[string]any{"type": "bind", "id": "b", "idnat": hubtest.Localpart("alice")}, nil)
}

// TestActingUser: what the media endpoint asks before accepting an
// upload made with a bridge token.
func TestActingUser(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")
	if _, err := e.st.PutBinding(ctx, store.Binding{Kind: store.BindingBridge, AppID: "acme-app", UserID: "@" + alice + ":" + server,
		Proof: store.ProofLinkCode}); err != nil {
		t.Fatal(err)
	}
	u, err := e.g.ActingUser(ctx, e.token, "@"+alice+":"+server)
	if err != nil || string(u) != "@"+alice+":"+server {
		t.Fatalf("bound user: %s %v", u, err)
	}
	for _, tc := range []struct{ token, user, code string }{
		{e.token, "@" + bob + ":" + server, "EIMIS_NOT_BOUND"},
		{"eimisb_wrong", "@" + alice + ":" + server, "EIMIS_BAD_TOKEN"},
		{e.token, "@" + alice + ":elsewhere.example", "EIMIS_FOREIGN_SERVER"},
	} {
		var ge *gateway.Error
		if _, err := e.g.ActingUser(ctx, tc.token, tc.user); !errors.As(err, &ge) || ge.Code != tc.code {
			t.Errorf("ActingUser(%s): %v, want %s", tc.user, err, tc.code)
		}
	}
	if _, err := e.ops.Suspend(ctx, "acme", "audit", "test"); err != nil {
		t.Fatal(err)
	}
	var ge *gateway.Error
	if _, err := e.g.ActingUser(ctx, e.token, "@"+alice+":"+server); !errors.As(err, &ge) || ge.Code != "EIMIS_OPERATOR_SUSPENDED" {
		t.Errorf("suspended operator: %v", err)
	}
}

// TestUserRevokedPush: the trust keeper's removal reaches the bridges of
// this instance at once (the leave events reach the others).
func TestUserRevokedPush(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t)
	c.hello(e.token)
	alice := hubtest.Localpart("alice")
	c.mustResult(map[string]any{"type": "bind", "id": "b", "idnat": alice}, nil)
	e.g.UserRevoked(t.Context(), id.UserID("@"+alice+":"+server), policy.InactivePractitioner, "practitioner "+alice+" is not active in the health directory")
	f := c.mustNext()
	if f.Type != "user_revoked" || f.Code != "EIMIS_INACTIVE_PRACTITIONER" || !strings.Contains(string(f.raw), `"idnat":"`+alice+`"`) {
		t.Fatalf("push: %s", f.raw)
	}
	if users, _ := e.st.BridgeUsers(t.Context(), "acme-app"); len(users) != 0 {
		t.Fatalf("binding kept: %v", users)
	}
	if f, _ := c.request(map[string]any{"type": "room_info", "id": "r", "user": alice, "room_id": "!x:hub.test"}); f.Code != "EIMIS_NOT_BOUND" {
		t.Fatalf("acting for a revoked user: %s", f.raw)
	}
}
