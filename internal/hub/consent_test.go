package hub_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/bridges/sdk"
	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

// callURL sends a JSON request with a bearer token to a full URL and
// decodes the answer.
func callURL(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	r := do(t, url, method, "", token, body)
	return r.status, r.body
}

// linkCode gets a link code in the practitioner's own session.
func linkCode(t *testing.T, h *hubtest.Hub, c *mautrix.Client, body any) string {
	t.Helper()
	st, out := callURL(t, "POST", h.URL+"/_eimis/client/v1/bindings/link_code", c.AccessToken, body)
	code, _ := out["link_code"].(string)
	ms, _ := out["expires_in_ms"].(float64)
	if st != 200 || len(code) != 9 || ms <= 0 || ms > float64(10*time.Minute/time.Millisecond) {
		t.Fatalf("link code for %s: %d %v", c.UserID, st, out)
	}
	return code
}

// auditActions lists the audit entries of binding actions about target.
func auditActions(t *testing.T, h *hubtest.Hub, target string) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	if _, err := h.Store.ReadAudit(t.Context(), store.AuditQuery{}, func(e store.AuditEntry) error {
		if strings.HasPrefix(e.Action, "binding.") && e.Target == target {
			out = append(out, e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBridgeConsent: the practitioner logs in, gets a link code and types
// it into the vendor's app, whose bridge binds her with it and receives
// her rooms' events; she lists her bindings and revokes it; the bridge is
// told at once and can no longer act for her. An operator revokes
// another binding through the admin API.
func TestBridgeConsent(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	tokA, _ := addBridges(t, h)
	alice := h.NewUser(t, "alice") // logged in with her password
	carol := h.NewUser(t, "carol")
	bob := h.NewUser(t, "bob") // a Matrix client
	app := startApp(t, h.URL, tokA)
	aliceLP, carolLP := hubtest.Localpart("alice"), hubtest.Localpart("carol")

	// No proof, no binding.
	if _, err := app.Bind(ctx, aliceLP); !errors.Is(err, sdk.ErrConsentRequired) {
		t.Fatalf("bind without consent: %v", err)
	}
	// A code needs a practitioner's own session.
	if st, out := callURL(t, "POST", h.URL+"/_eimis/client/v1/bindings/link_code", "", nil); st != 401 || out["errcode"] != "M_MISSING_TOKEN" {
		t.Fatalf("link code without a session: %d %v", st, out)
	}
	if st, out := callURL(t, "POST", h.URL+"/_eimis/client/v1/bindings/link_code", alice.AccessToken, map[string]any{"door": "bridge"}); st != 400 || out["errcode"] != "M_INVALID_PARAM" {
		t.Fatalf("link code for a bridge without its ID: %d %v", st, out)
	}
	if st, out := callURL(t, "POST", h.URL+"/_eimis/client/v1/bindings/link_code", alice.AccessToken, map[string]any{"dor": "bridge"}); st != 400 || out["errcode"] != "M_BAD_JSON" {
		t.Fatalf("link code with a misspelt field: %d %v", st, out)
	}

	// Alice's code, restricted to app A's bridge, typed into app A.
	code := linkCode(t, h, alice, map[string]any{"door": "bridge", "id": "acme-app"})
	if _, err := app.BindWithLinkCode(ctx, carolLP, code); !errors.Is(err, sdk.ErrLinkCodeInvalid) {
		t.Fatalf("alice's code used for carol: %v", err)
	}
	u, err := app.BindWithLinkCode(ctx, aliceLP, code)
	if err != nil || u.UserID != sdk.UserID(alice.UserID) {
		t.Fatalf("bind with alice's code: %+v, %v", u, err)
	}
	if _, err := app.BindWithLinkCode(ctx, aliceLP, code); !errors.Is(err, sdk.ErrLinkCodeInvalid) {
		t.Fatalf("code used twice: %v", err)
	}
	if _, err := app.BindWithLinkCode(ctx, carolLP, linkCode(t, h, carol, nil)); err != nil {
		t.Fatalf("bind carol: %v", err)
	}

	// The bridge acts for them: bob invites both, they join, it gets
	// bob's message.
	resp, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{alice.UserID, carol.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	room := string(resp.RoomID)
	for _, lp := range []string{aliceLP, carolLP} {
		hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
			_, err := app.Join(ctx, lp, sdk.RoomID(room))
			return err
		})
	}
	if _, err := bob.SendText(ctx, id.RoomID(room), "before the revocation"); err != nil {
		t.Fatal(err)
	}
	if ev := app.rec.waitMessage(t, "before the revocation"); !slices.Contains(ev.Users, sdk.UserID(alice.UserID)) {
		t.Fatalf("the event does not name alice: %v", ev.Users)
	}

	// Alice lists her bindings: app A's bridge, with her link code.
	st, out := callURL(t, "GET", h.URL+"/_eimis/client/v1/bindings", alice.AccessToken, nil)
	list, _ := out["bindings"].([]any)
	if st != 200 || len(list) != 1 {
		t.Fatalf("alice's bindings: %d %v", st, out)
	}
	if b := list[0].(map[string]any); b["door"] != "bridge" || b["id"] != "acme-app" || b["proof"] != "link_code" || b["active"] != true ||
		b["user_id"] != string(alice.UserID) {
		t.Fatalf("alice's binding: %v", b)
	}

	// She revokes it: the bridge is told at once, and can neither act
	// nor read for her.
	if st, out := callURL(t, "DELETE", h.URL+"/_eimis/client/v1/bindings/bridge/acme-app", alice.AccessToken, nil); st != 200 {
		t.Fatalf("revoke: %d %v", st, out)
	}
	hubtest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		app.rec.mu.Lock()
		defer app.rec.mu.Unlock()
		if len(app.rec.revoked) != 1 || app.rec.revoked[0].UserID != sdk.UserID(alice.UserID) || app.rec.revoked[0].Code != "EIMIS_BINDING_REVOKED" {
			return fmt.Errorf("revocations: %+v", app.rec.revoked)
		}
		return nil
	})
	if _, err := app.SendText(ctx, aliceLP, sdk.RoomID(room), "x", "as alice, after"); !errors.Is(err, sdk.ErrNotBound) {
		t.Fatalf("send as alice after the revocation: %v", err)
	}
	if _, err := app.Bind(ctx, aliceLP); !errors.Is(err, sdk.ErrConsentRequired) {
		t.Fatalf("bind alice again without a new consent: %v", err)
	}
	if st, out := callURL(t, "DELETE", h.URL+"/_eimis/client/v1/bindings/bridge/acme-app", alice.AccessToken, nil); st != 404 || out["errcode"] != "M_NOT_FOUND" {
		t.Fatalf("revoke twice: %d %v", st, out)
	}
	// Bob's next message still reaches the bridge for carol, never for alice.
	if _, err := bob.SendText(ctx, id.RoomID(room), "after the revocation"); err != nil {
		t.Fatal(err)
	}
	if ev := app.rec.waitMessage(t, "after the revocation"); !slices.Equal(ev.Users, []sdk.UserID{sdk.UserID(carol.UserID)}) {
		t.Fatalf("the event after the revocation is delivered for %v", ev.Users)
	}

	// The trail names the app and the practitioner at each step, refused
	// binds included.
	var steps []string
	for _, e := range auditActions(t, h, string(alice.UserID)) {
		steps = append(steps, e.Action+" "+e.Decision+" "+e.Actor+" "+e.Reason+" door="+e.Door)
	}
	want := []string{
		"binding.bind deny operator:acme EIMIS_CONSENT_REQUIRED door=bridge:acme-app",
		"binding.link_code allow " + string(alice.UserID) + " for=bridge:acme-app door=client:" + string(alice.DeviceID),
		"binding.bind allow bridge:acme-app app=bridge:acme-app proof=link_code door=bridge:acme-app",
		"binding.bind deny operator:acme EIMIS_LINK_CODE_INVALID door=bridge:acme-app",
		"binding.revoke allow " + string(alice.UserID) + " app=bridge:acme-app door=client:" + string(alice.DeviceID),
		"binding.bind deny operator:acme EIMIS_CONSENT_REQUIRED door=bridge:acme-app",
	}
	if !slices.Equal(steps, want) {
		t.Fatalf("audit trail of alice's bindings:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}

	// An operator lists every binding and revokes carol's through the
	// admin API.
	if err := h.Store.CreateServiceAccount(ctx, store.ServiceAccount{Localpart: "ops", Kind: store.KindAdmin, Name: "Exploitation"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.IDs.CreateAccount(ctx, "ops", "pw-ops", true); err != nil {
		t.Fatal(err)
	}
	ops := h.Client(t, "ops", "pw-ops")
	if st, out := callURL(t, "GET", h.URL+"/_eimis/admin/v1/bindings", carol.AccessToken, nil); st != 403 {
		t.Fatalf("a practitioner lists every binding: %d %v", st, out)
	}
	st, out = callURL(t, "GET", h.URL+"/_eimis/admin/v1/bindings?door=bridge&id=acme-app", ops.AccessToken, nil)
	if list, _ := out["bindings"].([]any); st != 200 || len(list) != 1 || list[0].(map[string]any)["user_id"] != string(carol.UserID) {
		t.Fatalf("admin list: %d %v", st, out)
	}
	if st, out := callURL(t, "DELETE", h.URL+"/_eimis/admin/v1/bindings/bridge/acme-app/"+string(carol.UserID), ops.AccessToken, nil); st != 200 {
		t.Fatalf("admin revoke: %d %v", st, out)
	}
	hubtest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		app.rec.mu.Lock()
		defer app.rec.mu.Unlock()
		if len(app.rec.revoked) != 2 || app.rec.revoked[1].UserID != sdk.UserID(carol.UserID) {
			return fmt.Errorf("revocations: %+v", app.rec.revoked)
		}
		return nil
	})
	if e := auditActions(t, h, string(carol.UserID)); len(e) == 0 || e[len(e)-1].Action != audit.ActionBindingRevoke || e[len(e)-1].Actor != string(ops.UserID) {
		t.Fatalf("audit of the operator's revocation: %+v", e)
	}
}

// TestAppserviceConsent: an appservice's puppet of a practitioner is
// refused, and shown under no directory name, until the practitioner
// consents to that appservice: by approving it from their own session,
// or with a link code the appservice presents.
func TestAppserviceConsent(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := t.Context()
	fake := newFakeAS(0)
	defer fake.Close()
	file, asToken, _ := fakeRegistration(fake.URL)
	addAppservice(t, file, h)
	as := asClient{url: h.URL, token: asToken}
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	carol := h.NewUser(t, "carol")
	bobPuppet := id.NewUserID("fake_"+hubtest.Localpart("bob"), h.Config.ServerName)
	carolPuppet := id.NewUserID("fake_"+hubtest.Localpart("carol"), h.Config.ServerName)
	register := func(p id.UserID) (int, map[string]any) {
		return as.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"type": "m.login.application_service", "username": p.Localpart()})
	}

	// Without consent: no account, no name, no invitation.
	if st, body := register(bobPuppet); st != 403 || body["eimis_code"] != "EIMIS_CONSENT_REQUIRED" {
		t.Fatalf("register bob's puppet without his consent: %d %v", st, body)
	}
	if name, ok := h.Policy.DisplayName(bobPuppet); ok {
		t.Fatalf("bob's puppet borrows the name %q", name)
	}
	resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	room := resp.RoomID
	_, err = alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bobPuppet})
	wantRefusal(t, "invite bob's puppet without his consent", err, "EIMIS_CONSENT_REQUIRED")

	// Bob approves the appservice from his own session.
	st, out := callURL(t, "POST", h.URL+"/_eimis/client/v1/bindings", bob.AccessToken, map[string]any{"door": "appservice", "id": "fake"})
	if st != 200 || out["proof"] != "session" || out["door"] != "appservice" {
		t.Fatalf("bob approves: %d %v", st, out)
	}
	if st, out := callURL(t, "POST", h.URL+"/_eimis/client/v1/bindings", bob.AccessToken, map[string]any{"door": "appservice", "id": "nope"}); st != 404 {
		t.Fatalf("approve an unknown appservice: %d %v", st, out)
	}
	if st, body := register(bobPuppet); st != 200 {
		t.Fatalf("register bob's puppet with his consent: %d %v", st, body)
	}
	if name, ok := h.Policy.DisplayName(bobPuppet); !ok || name != "Bob Test - Infirmier" {
		t.Fatalf("bob's puppet's name = %q, %v", name, ok)
	}
	if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bobPuppet}); err != nil {
		t.Fatalf("invite bob's puppet: %v", err)
	}
	if st, body := as.do(t, "POST", "/_matrix/client/v3/join/"+string(room), string(bobPuppet), map[string]any{}); st != 200 {
		t.Fatalf("bob's puppet joins: %d %v", st, body)
	}

	// Carol consents through the appservice, with a link code for it.
	if st, out := callURL(t, "POST", h.URL+"/_eimis/appservice/v1/bindings", asToken, map[string]any{"user_id": carolPuppet, "link_code": "AAAA-AAAA"}); st != 403 || out["eimis_code"] != "EIMIS_LINK_CODE_INVALID" {
		t.Fatalf("appservice bind with a wrong code: %d %v", st, out)
	}
	code := linkCode(t, h, carol, map[string]any{"door": "appservice", "id": "fake"})
	if st, out := callURL(t, "POST", h.URL+"/_eimis/appservice/v1/bindings", alice.AccessToken, map[string]any{"user_id": carolPuppet, "link_code": code}); st != 401 || out["errcode"] != "M_UNKNOWN_TOKEN" {
		t.Fatalf("appservice bind with a practitioner's token: %d %v", st, out)
	}
	if st, out := callURL(t, "POST", h.URL+"/_eimis/appservice/v1/bindings", asToken, map[string]any{"user_id": "@other_" + hubtest.Localpart("carol") + ":hub.test", "link_code": code}); st != 400 {
		t.Fatalf("appservice bind of a user not its puppet: %d %v", st, out)
	}
	st, out = callURL(t, "POST", h.URL+"/_eimis/appservice/v1/bindings", asToken, map[string]any{"user_id": carolPuppet, "link_code": code})
	if st != 200 || out["user_id"] != string(carol.UserID) || out["proof"] != "link_code" {
		t.Fatalf("appservice bind with carol's code: %d %v", st, out)
	}
	if st, body := register(carolPuppet); st != 200 {
		t.Fatalf("register carol's puppet with her consent: %d %v", st, body)
	}

	// Bob revokes his consent: his puppet is refused at once, and the hub
	// takes it out of the room, so the appservice stops reading it.
	if st, out := callURL(t, "DELETE", h.URL+"/_eimis/client/v1/bindings/appservice/fake", bob.AccessToken, nil); st != 200 {
		t.Fatalf("bob revokes: %d %v", st, out)
	}
	if st, body := as.do(t, "PUT", "/_matrix/client/v3/rooms/"+string(room)+"/send/m.room.message/t1", string(bobPuppet),
		map[string]any{"msgtype": "m.text", "body": "still bob?"}); st != 403 || body["eimis_code"] != "EIMIS_CONSENT_REQUIRED" {
		t.Fatalf("bob's puppet sends after the revocation: %d %v", st, body)
	}
	hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		var m event.MemberEventContent
		if err := alice.StateEvent(ctx, room, event.StateMember, string(bobPuppet), &m); err != nil {
			return err
		}
		if m.Membership != event.MembershipLeave {
			return fmt.Errorf("bob's puppet is still %s", m.Membership)
		}
		return nil
	})
	var steps []string
	for _, e := range auditActions(t, h, string(carol.UserID)) {
		steps = append(steps, e.Action+" "+e.Decision+" "+e.Actor+" "+e.Reason+" door="+e.Door)
	}
	want := []string{
		"binding.bind deny " + string(carolPuppet) + " EIMIS_LINK_CODE_INVALID door=appservice:fake",
		"binding.link_code allow " + string(carol.UserID) + " for=appservice:fake door=client:" + string(carol.DeviceID),
		"binding.bind allow appservice:fake app=appservice:fake proof=link_code door=appservice:fake",
	}
	if !slices.Equal(steps, want) {
		t.Fatalf("audit trail of carol's bindings:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}
}

// TestBindingRevokedOtherInstance: a bridge connected to one instance
// loses a practitioner the moment she revokes its binding on another
// (the instances share the store and announce changes over NATS).
func TestBindingRevokedOtherInstance(t *testing.T) {
	opts := hubtest.Options{Dialect: "postgres", DatabaseURL: pgtest.URL(t), NATSURL: startNATS(t), SigningKeyPath: hubtest.SigningKeyFile(t)}
	a := hubtest.Start(t, opts)
	b := hubtest.Start(t, opts)
	ctx := ctxT(t)
	tokA, _ := addBridges(t, a)
	alice := a.NewUser(t, "alice")
	app := startApp(t, a.URL, tokA) // connected to instance a
	if _, err := app.BindWithLinkCode(ctx, hubtest.Localpart("alice"), linkCode(t, a, alice, nil)); err != nil {
		t.Fatal(err)
	}
	// She revokes it through instance b.
	if st, out := callURL(t, "DELETE", b.URL+"/_eimis/client/v1/bindings/bridge/acme-app", alice.AccessToken, nil); st != 200 {
		t.Fatalf("revoke on b: %d %v", st, out)
	}
	hubtest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		app.rec.mu.Lock()
		defer app.rec.mu.Unlock()
		if len(app.rec.revoked) != 1 || app.rec.revoked[0].Code != "EIMIS_BINDING_REVOKED" {
			return fmt.Errorf("revocations: %+v", app.rec.revoked)
		}
		return nil
	})
	if _, err := app.CreateRoom(ctx, sdk.CreateRoom{As: hubtest.Localpart("alice"), Name: "after"}); !errors.Is(err, sdk.ErrNotBound) {
		t.Fatalf("acting for alice after the revocation: %v", err)
	}
}
