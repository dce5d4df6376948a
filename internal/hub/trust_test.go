package hub_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/store"
)

// refusal returns the Matrix error code and the eimis_code of err.
func refusal(err error) (string, string) {
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil {
		return "not a Matrix error: " + errString(err), ""
	}
	code, _ := he.RespError.ExtraData["eimis_code"].(string)
	return he.RespError.ErrCode, code
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func wantRefusal(t *testing.T, what string, err error, eimisCode string) {
	t.Helper()
	code, ec := refusal(err)
	if code != "M_FORBIDDEN" || ec != eimisCode {
		t.Fatalf("%s: got %s/%s (%v), want M_FORBIDDEN/%s", what, code, ec, err, eimisCode)
	}
}

// registerShared registers through the Synapse-compatible admin API and
// returns the HTTP status and body.
func registerShared(t *testing.T, url, secret, user string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url + "/_synapse/admin/v1/register")
	if err != nil {
		t.Fatal(err)
	}
	var n struct {
		Nonce string `json:"nonce"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&n)
	resp.Body.Close()
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(n.Nonce + "\x00" + user + "\x00pw\x00notadmin"))
	body, _ := json.Marshal(map[string]any{"nonce": n.Nonce, "username": user, "password": "pw", "admin": false, "mac": hex.EncodeToString(m.Sum(nil))})
	resp, err = http.Post(url+"/_synapse/admin/v1/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestNonHealthAccountCannotBeCreated: there are no accounts outside the
// trust space, whichever door an account would come through.
func TestNonHealthAccountCannotBeCreated(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	h := hubtest.Start(t, hubtest.Options{SharedSecret: secret, Configure: func(c *config.Config) { c.EnableRegistration = true }})
	unknown := "8" + strings.Repeat("9", 10) // Luhn-valid or not, absent from the test directory
	cases := []struct {
		user, code string
	}{
		{"mallory-not-a-doctor", "EIMIS_NOT_A_PRACTITIONER_ID"},
		{hubtest.Localpart("user1") + "0", "EIMIS_NOT_A_PRACTITIONER_ID"}, // 13 digits: not an idNat
		{unknown + checkDigitFor(unknown[1:]), "EIMIS_NOT_IN_DIRECTORY"},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			status, body := registerShared(t, h.URL, secret, c.user)
			if status != http.StatusForbidden || body["errcode"] != "M_FORBIDDEN" || body["eimis_code"] != c.code {
				t.Fatalf("shared-secret register: %d %v, want 403 %s", status, body, c.code)
			}
			if msg, _ := body["error"].(string); msg == "" || !strings.Contains(msg, strings.TrimPrefix(c.user, "@")) {
				t.Fatalf("the reason must name who was refused: %q", msg)
			}
			// Open registration (on here) is held to the same rule.
			cli, _ := mautrix.NewClient(h.URL, "", "")
			_, err := cli.RegisterDummy(ctxT(t), &mautrix.ReqRegister[any]{Username: c.user, Password: "pw-123456"})
			wantRefusal(t, "open registration", err, c.code)
			if _, err := h.Store.GetAccount(ctxT(t), c.user); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a refused account exists: %v", err)
			}
		})
	}
	// A practitioner of the directory is welcome, with the directory's name.
	status, body := registerShared(t, h.URL, secret, hubtest.Localpart("alice"))
	if status != 200 {
		t.Fatalf("practitioner register: %d %v", status, body)
	}
	acc, err := h.Store.GetAccount(ctxT(t), hubtest.Localpart("alice"))
	if err != nil || acc.DisplayName != "Alice Test - Infirmier" && acc.DisplayName != "Alice Test - Médecin" {
		t.Fatalf("display name from the directory: %+v, %v", acc, err)
	}
}

// checkDigitFor completes a 10-digit RPPS stem with its Luhn digit.
func checkDigitFor(stem string) string {
	for d := '0'; d <= '9'; d++ {
		s := stem + string(d)
		sum := 0
		for i := range len(s) {
			n := int(s[len(s)-1-i] - '0')
			if i%2 == 1 {
				n *= 2
				if n > 9 {
					n -= 9
				}
			}
			sum += n
		}
		if sum%10 == 0 {
			return string(d)
		}
	}
	return ""
}

// TestInactivePractitioner: someone who leaves the directory cannot log
// in, cannot be invited, and is taken out of their rooms at the next
// refresh, with the reason in the membership event.
func TestInactivePractitioner(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			h := hubtest.Start(t, hubtest.Options{Dialect: dialect, Configure: func(c *config.Config) {
				c.TrustReloadInterval = time.Second
			}})
			ctx := ctxT(t)
			alice := h.NewUser(t, "alice")
			bob := h.NewUser(t, "bob")
			h.CreateUser(t, "dave", "pw-dave")
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Staff", Invite: []id.UserID{bob.UserID}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
			since, _ := syncUntil(t, alice, "", func(evs []*event.Event) bool {
				for _, e := range evs {
					if e.Type == event.StateMember && e.GetStateKey() == string(bob.UserID) && e.Content.Raw["membership"] == "join" {
						return true
					}
				}
				return false
			})

			// The next extract no longer lists bob and dave.
			h.ImportDirectory(t, hubtest.Without(hubtest.People(), "bob", "dave"))

			// Bob is taken out of the room by the hub, with the reason.
			var leave *event.Event
			syncUntil(t, alice, since, func(evs []*event.Event) bool {
				for _, e := range evs {
					if e.Type == event.StateMember && e.GetStateKey() == string(bob.UserID) && e.Content.Raw["membership"] == "leave" {
						leave = e
						return true
					}
				}
				return false
			})
			if r, _ := leave.Content.Raw["reason"].(string); !strings.Contains(r, "not active in the health directory") || !strings.Contains(r, hubtest.Localpart("bob")) {
				t.Fatalf("leave reason = %q", r)
			}
			// His sessions are revoked…
			hubtest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
				_, err := bob.Whoami(ctx)
				if code, _ := refusal(err); code != "M_UNKNOWN_TOKEN" {
					return errors.New("bob's token still works: " + code)
				}
				return nil
			})
			// …and neither can log in again.
			for _, who := range []string{"bob", "dave"} {
				cli, _ := mautrix.NewClient(h.URL, "", "")
				_, err := cli.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
					Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: hubtest.Localpart(who)}, Password: "pw-" + who})
				wantRefusal(t, who+" login", err, "EIMIS_INACTIVE_PRACTITIONER")
			}
			// Dave cannot be invited, nor put in a new room.
			dave := hubtest.UserID("dave", h.Config.ServerName)
			_, err = alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: dave})
			wantRefusal(t, "invite inactive", err, "EIMIS_INACTIVE_PRACTITIONER")
			_, err = alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "With dave", Invite: []id.UserID{dave}})
			wantRefusal(t, "createRoom inviting inactive", err, "EIMIS_INACTIVE_PRACTITIONER")
			joined, err := alice.JoinedRooms(ctx)
			if err != nil || len(joined.JoinedRooms) != 1 {
				t.Fatalf("a refused createRoom must create nothing: %v %v", joined, err)
			}
			// Alice, still active, carries on.
			if _, err := alice.SendText(ctx, room.RoomID, "still here"); err != nil {
				t.Fatal(err)
			}
			members, err := alice.JoinedMembers(ctx, room.RoomID)
			if err != nil || len(members.Joined) != 1 {
				t.Fatalf("members after removal = %v, %v", members, err)
			}
		})
	}
}

// TestDirectoryNames: names come from the directory and cannot be changed
// to someone else's.
func TestDirectoryNames(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	name, err := alice.GetDisplayName(ctx, alice.UserID)
	if err != nil || name.DisplayName != "Alice Test - Médecin" {
		t.Fatalf("profile name = %+v, %v", name, err)
	}
	err = alice.SetDisplayName(ctx, "Bob Test - Infirmier")
	wantRefusal(t, "rename", err, "EIMIS_DISPLAY_NAME_FROM_DIRECTORY")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	// A member event written by hand with a borrowed name is rewritten.
	if _, err := alice.SendStateEvent(ctx, room.RoomID, event.StateMember, string(alice.UserID),
		map[string]any{"membership": "join", "displayname": "Dr House"}); err != nil {
		t.Fatal(err)
	}
	var m event.MemberEventContent
	if err := alice.StateEvent(ctx, room.RoomID, event.StateMember, string(alice.UserID), &m); err != nil {
		t.Fatal(err)
	}
	if m.Displayname != "Alice Test - Médecin" {
		t.Fatalf("member displayname = %q", m.Displayname)
	}
	var inv event.MemberEventContent
	if err := alice.StateEvent(ctx, room.RoomID, event.StateMember, string(bob.UserID), &inv); err != nil || inv.Displayname != "Bob Test - Infirmier" {
		t.Fatalf("invite displayname = %q, %v", inv.Displayname, err)
	}
}

// TestServiceAccounts: organisational accounts take part under their
// responsible practitioner; administration accounts never do.
func TestServiceAccounts(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{Configure: func(c *config.Config) { c.TrustReloadInterval = time.Second }})
	ctx := ctxT(t)
	for _, a := range []store.ServiceAccount{
		{Localpart: "cardio-lyon", Kind: store.KindOrganisational, Name: "Cardiologie - Hôpital de test", ResponsibleIDNat: hubtest.Localpart("carol")},
		{Localpart: "ops", Kind: store.KindAdmin, Name: "Exploitation"},
	} {
		if err := h.Store.CreateServiceAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	alice := h.NewUser(t, "alice")
	cardio := h.NewUser(t, "cardio-lyon")
	ops := h.NewUser(t, "ops") // may log in (admin API)…
	if _, err := ops.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "x"}); err == nil {
		t.Fatal("an administration account must not take part in conversations")
	} else {
		wantRefusal(t, "admin createRoom", err, "EIMIS_ADMIN_ACCOUNT")
	}
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{cardio.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cardio.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	if _, err := cardio.SendText(ctx, room.RoomID, "Le service vous rappelle"); err != nil {
		t.Fatal(err)
	}
	// Found by its name in the user directory.
	found, err := alice.SearchUserDirectory(ctx, "cardiologie", 10)
	if err != nil || len(found.Results) != 1 || found.Results[0].UserID != cardio.UserID {
		t.Fatalf("search = %+v, %v", found, err)
	}
	// Its responsible practitioner leaves the directory: the account goes.
	h.ImportDirectory(t, hubtest.Without(hubtest.People(), "carol"))
	hubtest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		mems, err := h.Store.UserMemberships(ctx, string(cardio.UserID))
		if err != nil {
			return err
		}
		for _, m := range mems {
			if m.Membership == "join" {
				return errors.New("organisational account still in the room")
			}
		}
		return nil
	})
	_, err = cardio.SendText(ctx, room.RoomID, "encore là ?")
	if code, _ := refusal(err); code != "M_UNKNOWN_TOKEN" && code != "M_FORBIDDEN" {
		t.Fatalf("send after removal: %v", err)
	}
}

// TestUserDirectorySearch: Element's "start chat" answered from the health
// directory, limited to who can be reached.
func TestUserDirectorySearch(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	for _, n := range []string{"user1", "user2", "user3", "bob"} {
		h.CreateUser(t, n, "pw")
	}
	cases := []struct {
		term  string
		limit int
		want  int
		lim   bool
	}{
		{"lyon", 50, 5, false},           // city: every account holder (all work in Lyon)
		{"lyon", 2, 2, true},             // never more than the limit
		{"infirmier lyon", 50, 2, false}, // profession + city: bob, user2 (even serials)
		{"user", 50, 3, false},           // name prefix; user4… have no account
		{hubtest.Localpart("bob"), 5, 1, false},
		{"grace", 5, 0, false}, // in the directory, but no account here
	}
	for _, c := range cases {
		res, err := alice.SearchUserDirectory(ctx, c.term, c.limit)
		if err != nil {
			t.Fatalf("%q: %v", c.term, err)
		}
		if len(res.Results) != c.want || res.Limited != c.lim {
			t.Errorf("%q limit %d: %d results (limited %v), want %d (%v): %+v", c.term, c.limit, len(res.Results), res.Limited, c.want, c.lim, res.Results)
		}
	}
	res, _ := alice.SearchUserDirectory(ctx, "bob test", 5)
	// The spec's field is display_name (mautrix reads "displayname").
	if len(res.Results) != 1 || res.Results[0].Extra["display_name"] != "Bob Test - Infirmier" {
		t.Fatalf("exact name = %+v", *res.Results[0])
	}
}
