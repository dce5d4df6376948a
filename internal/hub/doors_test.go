package hub_test

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
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
)

// refusalCount reads eimis_policy_refusals_total for one code and door
// kind from /metrics (0 when the series does not exist yet).
func refusalCount(t *testing.T, h *hubtest.Hub, code, door string) int {
	t.Helper()
	_, body := getText(t, h.URL+"/metrics")
	re := regexp.MustCompile(`(?m)^eimis_policy_refusals_total\{([^}]*)\} (\d+)$`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		if strings.Contains(m[1], `code="`+code+`"`) && strings.Contains(m[1], `door="`+door+`"`) {
			fmt.Sscan(m[2], &n)
		}
	}
	return n
}

// TestRefusalsTakeOnePath: a refusal at the Client-Server API, at the
// Bridge Protocol and at the admin API is counted in
// eimis_policy_refusals_total{code,door} and audited with its door; an
// accepted event is audited with the door it came through.
func TestRefusalsTakeOnePath(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{Configure: insecureBinds})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	tokA, _ := addBridges(t, h)
	app := startApp(t, h.URL, tokA)
	if _, err := app.Bind(ctx, hubtest.Localpart("bob")); err != nil {
		t.Fatalf("bind bob: %v", err)
	}

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{h.UserID("bob")}})
	if err != nil {
		t.Fatal(err)
	}
	// Client-Server API: an invite of someone outside the directory.
	_, err = alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: h.UserID("user999")})
	wantRefusal(t, "invite outside the directory", err, "EIMIS_NOT_IN_DIRECTORY")
	// Bridge Protocol: a send for a user the bridge does not act for.
	if _, err := app.SendText(ctx, hubtest.Localpart("carol"), sdk.RoomID(room.RoomID), "t1", "x"); !errors.Is(err, sdk.ErrNotBound) {
		t.Fatalf("send as an unbound user: %v", err)
	}
	// Admin API: a practitioner is not an admin.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/_eimis/admin/v1/operators", nil)
	req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin API as a practitioner: %d", resp.StatusCode)
	}
	// Accepted events from two doors.
	if _, err := app.Join(ctx, hubtest.Localpart("bob"), sdk.RoomID(room.RoomID)); err != nil {
		t.Fatal(err)
	}
	fromBridge, err := app.SendText(ctx, hubtest.Localpart("bob"), sdk.RoomID(room.RoomID), "b1", "from the app")
	if err != nil {
		t.Fatal(err)
	}
	fromClient, err := alice.SendText(ctx, room.RoomID, "from Matrix")
	if err != nil {
		t.Fatal(err)
	}

	// Client-Server API: the room's own rules (carol is not a member: she
	// may not send).
	carol := h.NewUser(t, "carol")
	if _, err := carol.SendText(ctx, room.RoomID, "not a member"); err == nil {
		t.Fatal("a non-member could send")
	}
	// Client-Server API: acting for someone else (another's typing and
	// profile).
	for _, c := range []struct{ method, path string }{
		{"PUT", "/_matrix/client/v3/rooms/" + string(room.RoomID) + "/typing/" + string(carol.UserID)},
		{"PUT", "/_matrix/client/v3/profile/" + string(carol.UserID) + "/displayname"},
	} {
		if st, out := call(t, h.URL, alice.AccessToken, c.method, c.path, map[string]any{"typing": true, "displayname": "x"}); st != 403 {
			t.Fatalf("%s %s: %d %v, want 403", c.method, c.path, st, out)
		}
	}
	for _, c := range []struct{ code, door string }{
		{"EIMIS_NOT_IN_DIRECTORY", "client"}, {"EIMIS_NOT_BOUND", "bridge"}, {"EIMIS_NOT_A_SERVER_ADMIN", "admin"},
		{"EIMIS_FORBIDDEN", "client"},
	} {
		if n := refusalCount(t, h, c.code, c.door); n != 1 {
			t.Errorf("eimis_policy_refusals_total{code=%q,door=%q} = %d, want 1", c.code, c.door, n)
		}
	}
	if n := refusalCount(t, h, "EIMIS_ACTING_FOR_ANOTHER", "client"); n != 2 {
		t.Errorf("acting for another: %d refusals counted, want 2", n)
	}

	clientDoor := "client:" + string(alice.DeviceID)
	var entries []audit.Entry
	hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		entries = auditEntries(t, h.Store)
		seen := 0
		for _, e := range entries {
			if e.EventID == string(fromClient.EventID) || e.EventID == string(fromBridge) {
				seen++
			}
		}
		if seen < 2 {
			return errors.New("the accepted events' audit entries have not arrived")
		}
		return nil
	})
	checks := map[string]func(audit.Entry) bool{
		"invite refused at the client door": func(e audit.Entry) bool {
			return e.Action == audit.ActionRoomInvite && e.Decision == audit.Deny && e.Reason == "EIMIS_NOT_IN_DIRECTORY" &&
				e.Door == clientDoor && e.Actor == string(alice.UserID)
		},
		"bridge send refused at the bridge door": func(e audit.Entry) bool {
			return e.Action == audit.ActionEventSend && e.Decision == audit.Deny && e.Reason == "EIMIS_NOT_BOUND" &&
				e.Door == "bridge:acme-app" && e.RoomID == string(room.RoomID)
		},
		"admin refusal at the admin door": func(e audit.Entry) bool {
			return e.Action == "admin.access" && e.Decision == audit.Deny && e.Door == "admin:"+string(alice.UserID)
		},
		"message from the app names the bridge": func(e audit.Entry) bool {
			return e.EventID == string(fromBridge) && e.Door == "bridge:acme-app" && e.Actor == string(h.UserID("bob"))
		},
		"message from Matrix names the device": func(e audit.Entry) bool {
			return e.EventID == string(fromClient.EventID) && e.Door == clientDoor
		},
		"login names the client door": func(e audit.Entry) bool {
			return e.Action == audit.ActionLogin && e.Decision == audit.Allow && e.Actor == string(alice.UserID) && e.Door == "client"
		},
	}
	for name, pred := range checks {
		found := false
		for _, e := range entries {
			if pred(e) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no audit entry for: %s", name)
		}
	}
	if res, err := audit.Verify(ctx, h.Store); err != nil {
		t.Fatalf("verify with doors: %+v, %v", res, err)
	}
}

// TestTxnIDScopedToPath: a transaction ID is scoped to the device and the
// request path. Reused in another room, for another event type or for a
// redaction, it is a new request; repeated on the same path it is a retry.
func TestTxnIDScopedToPath(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	r1, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	send := func(room id.RoomID, typ event.Type, body string) id.EventID {
		t.Helper()
		resp, err := alice.SendMessageEvent(ctx, room, typ, map[string]any{"msgtype": "m.text", "body": body}, mautrix.ReqSendEvent{TransactionID: "same-txn"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.EventID
	}
	first := send(r1.RoomID, event.EventMessage, "one")
	if again := send(r1.RoomID, event.EventMessage, "one"); again != first {
		t.Fatalf("retry on the same path = %s, want %s", again, first)
	}
	otherRoom := send(r2.RoomID, event.EventMessage, "two")
	otherType := send(r1.RoomID, event.NewEventType("org.example.note"), "three")
	redaction, err := alice.RedactEvent(ctx, r1.RoomID, first, mautrix.ReqRedact{TxnID: "same-txn"})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[id.EventID]string{first: "first"}
	for name, ev := range map[string]id.EventID{"other room": otherRoom, "other type": otherType, "redaction": redaction.EventID} {
		if prev, dup := ids[ev]; dup {
			t.Fatalf("%s returned the event of %s (%s): the new request was dropped", name, prev, ev)
		}
		ids[ev] = name
	}
	// Each new request really created its event.
	for name, c := range map[string]struct {
		room id.RoomID
		ev   id.EventID
		typ  string
	}{
		"other room": {r2.RoomID, otherRoom, "m.room.message"},
		"other type": {r1.RoomID, otherType, "org.example.note"},
		"redaction":  {r1.RoomID, redaction.EventID, "m.room.redaction"},
	} {
		ev, err := alice.GetEvent(ctx, c.room, c.ev)
		if err != nil || ev.Type.Type != c.typ {
			t.Fatalf("%s: event %s = %+v, %v", name, c.ev, ev, err)
		}
	}
}

// TestBridgeInviteeSeesNoMessages: a practitioner a bridge acts for who is
// only invited gets the invite, not the room's messages; once joined, the
// messages that follow.
func TestBridgeInviteeSeesNoMessages(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{Configure: insecureBinds})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	tokA, _ := addBridges(t, h)
	app := startApp(t, h.URL, tokA)
	bob := hubtest.Localpart("bob")
	if _, err := app.Bind(ctx, bob); err != nil {
		t.Fatalf("bind bob: %v", err)
	}
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{h.UserID("bob")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "said before bob joined"); err != nil {
		t.Fatal(err)
	}
	app.rec.waitFor(t, "bob's invite", func(evs []*sdk.Event) bool {
		for _, ev := range evs {
			if m, ok := ev.Membership(); ok && ev.RoomID == sdk.RoomID(room.RoomID) && m.User.IDNat() == bob && m.Membership == "invite" {
				return true
			}
		}
		return false
	})
	if _, err := app.Join(ctx, bob, sdk.RoomID(room.RoomID)); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "said after bob joined"); err != nil {
		t.Fatal(err)
	}
	app.rec.waitMessage(t, "said after bob joined")
	if got := app.rec.messages(); len(got) != 1 {
		t.Fatalf("the bridge got %q; an invitee must not receive the room's messages", got)
	}
	// Once joined, the app reads what came before, as a Matrix client
	// would in a `shared` room.
	hist, err := app.History(ctx, bob, sdk.RoomID(room.RoomID), 10)
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, ev := range hist {
		if m, ok := ev.Message(); ok {
			bodies = append(bodies, m.Body)
		}
	}
	if !slices.Equal(bodies, []string{"said before bob joined", "said after bob joined"}) {
		t.Fatalf("history after joining = %q", bodies)
	}
	// Carol's app (not in the room) reads nothing of it.
	if _, err := app.Bind(ctx, hubtest.Localpart("carol")); err != nil {
		t.Fatal(err)
	}
	if _, err := app.History(ctx, hubtest.Localpart("carol"), sdk.RoomID(room.RoomID), 10); !errors.Is(err, sdk.ErrForbidden) {
		t.Fatalf("history for a non-member: %v, want EIMIS_FORBIDDEN", err)
	}
}
