package hub_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// TestProfileFieldsBounded: a profile value that would make every member
// event of its owner too large (a 70 KB avatar_url) is refused and
// nothing changes; one stored before the bounds existed no longer breaks
// joins.
func TestProfileFieldsBounded(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	me := "/_matrix/client/v3/profile/" + url.PathEscape(string(alice.UserID))
	const good = "mxc://hub.test/abcDEF123_-"
	if st, out := call(t, h.URL, alice.AccessToken, "PUT", me+"/avatar_url", map[string]any{"avatar_url": good}); st != 200 {
		t.Fatalf("valid avatar: %d %v", st, out)
	}
	for _, c := range []struct {
		name, field string
		value       any
		status      int
		errcode     string
	}{
		{"70 KB avatar", "avatar_url", "mxc://hub.test/" + strings.Repeat("a", 70_000), 400, "M_INVALID_PARAM"},
		{"avatar just over 1000 bytes", "avatar_url", "mxc://hub.test/" + strings.Repeat("a", 1000-len("mxc://hub.test/")+1), 400, "M_INVALID_PARAM"},
		{"http avatar", "avatar_url", "https://evil.example/a.png", 400, "M_INVALID_PARAM"},
		{"mxc without media ID", "avatar_url", "mxc://hub.test/", 400, "M_INVALID_PARAM"},
		{"mxc with a path", "avatar_url", "mxc://hub.test/a/b", 400, "M_INVALID_PARAM"},
		{"avatar not a string", "avatar_url", 42, 400, "M_BAD_JSON"},
		{"avatar missing", "avatar_url", nil, 400, "M_MISSING_PARAM"},
		{"70 KB display name", "displayname", strings.Repeat("é", 70_000/2), 400, "M_INVALID_PARAM"},
		{"257-character display name", "displayname", strings.Repeat("x", 257), 400, "M_INVALID_PARAM"},
		{"display name with NUL", "displayname", "Alice\x00", 400, "M_INVALID_PARAM"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := map[string]any{}
			if c.value != nil {
				body[c.field] = c.value
			}
			st, out := call(t, h.URL, alice.AccessToken, "PUT", me+"/"+c.field, body)
			wantErr(t, c.name, st, out, c.status, c.errcode)
			acc, err := h.Store.GetAccount(ctx, alice.UserID.Localpart())
			if err != nil || acc.AvatarURL != good || len(acc.DisplayName) > 256 {
				t.Fatalf("the profile changed: %+v, %v", acc, err)
			}
		})
	}

	// A value stored before the bounds (or by hand) is left out of member
	// events, so its owner can still join.
	if err := h.Store.SetAvatarURL(ctx, alice.UserID.Localpart(), "mxc://hub.test/"+strings.Repeat("a", 70_000)); err != nil {
		t.Fatal(err)
	}
	if err := h.Store.SetDisplayName(ctx, alice.UserID.Localpart(), strings.Repeat("n", 70_000)); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"}); err != nil {
		t.Fatalf("create a room with an over-long stored profile: %v", err)
	}
	room, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: alice.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatalf("join with an over-long stored avatar: %v", err)
	}
	st, out := call(t, h.URL, bob.AccessToken, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(string(room.RoomID))+"/state/m.room.member/"+url.PathEscape(string(alice.UserID)), nil)
	if st != 200 || out["membership"] != "join" || out["avatar_url"] != nil {
		t.Fatalf("member event: %d %v (no avatar expected)", st, out)
	}
	if st, out := call(t, h.URL, bob.AccessToken, "GET", me, nil); st != 200 || out["avatar_url"] != nil {
		t.Fatalf("profile shows the invalid avatar: %d %v", st, out)
	}
}

// TestProfilesHideWhoHasAnAccount: with profile_requires_auth (the
// default) strangers learn nothing from /profile or /register/available;
// signed-in users see the profiles of people they can reach or share a
// room with, and the same 404 for everyone else, inactive practitioners
// included.
func TestProfilesHideWhoHasAnAccount(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	carol := h.NewUser(t, "carol") // shares a room with bob, then leaves the directory
	h.CreateUser(t, "dave", "pw-dave")
	room, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	h.ImportDirectory(t, hubtest.Without(hubtest.People(), "carol", "dave"))
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if h.Policy.CheckUser(h.UserID("dave")) == nil || h.Policy.CheckUser(h.UserID("carol")) == nil {
			return errors.New("carol and dave still active")
		}
		return nil
	})
	profile := func(name string) string {
		return "/_matrix/client/v3/profile/" + url.PathEscape(string(h.UserID(name)))
	}

	// Strangers: one answer whoever is asked about.
	for _, name := range []string{"alice", "dave", "eve"} { // active, inactive with an account, no account
		for _, p := range []string{profile(name), profile(name) + "/displayname", profile(name) + "/avatar_url"} {
			st, out := call(t, h.URL, "", "GET", p, nil)
			wantErr(t, "unauthenticated "+p, st, out, 401, "M_MISSING_TOKEN")
		}
	}
	st, out := call(t, h.URL, "not-a-token", "GET", profile("alice"), nil)
	wantErr(t, "unknown token", st, out, 401, "M_UNKNOWN_TOKEN")

	// Signed in.
	var notFound map[string]any
	for _, c := range []struct {
		viewer, name string
		found        bool
	}{
		{"bob", "bob", true},      // oneself
		{"bob", "alice", true},    // reachable: the directory search lists her
		{"bob", "carol", true},    // inactive, but bob shares a room with her
		{"alice", "carol", false}, // inactive, no shared room
		{"bob", "dave", false},    // inactive, no shared room
		{"bob", "eve", false},     // no account
	} {
		tok := map[string]string{"alice": alice.AccessToken, "bob": bob.AccessToken}[c.viewer]
		st, out := call(t, h.URL, tok, "GET", profile(c.name), nil)
		if c.found {
			if st != 200 || out["displayname"] == nil {
				t.Fatalf("%s reads %s: %d %v", c.viewer, c.name, st, out)
			}
			continue
		}
		wantErr(t, c.viewer+" reads "+c.name, st, out, 404, "M_NOT_FOUND")
		if notFound == nil {
			notFound = out
		} else if out["error"] != notFound["error"] {
			t.Fatalf("404 bodies differ, telling accounts apart: %v vs %v", out, notFound)
		}
	}

	// register/available, registration closed (the default): the same
	// answer for every valid name.
	for _, name := range []string{"alice", "dave", "eve"} {
		st, out := call(t, h.URL, "", "GET", "/_matrix/client/v3/register/available?username="+hubtest.Localpart(name), nil)
		wantErr(t, "register/available "+name, st, out, 403, "M_FORBIDDEN")
	}
	st, out = call(t, h.URL, "", "GET", "/_matrix/client/v3/register/available?username=Not%20Valid", nil)
	wantErr(t, "invalid username", st, out, 400, "M_INVALID_USERNAME")
}

// TestRegisterAvailableWithOpenRegistration: with registration open and
// the option on, every valid name is "available" (Element's sign-up form
// carries on; a taken name is refused at POST /register); with the option
// off the hub answers as Synapse does by default, and strangers can read
// profiles of reachable users only.
func TestRegisterAvailableWithOpenRegistration(t *testing.T) {
	for _, hide := range []bool{true, false} {
		name := map[bool]string{true: "hidden", false: "public"}[hide]
		t.Run(name, func(t *testing.T) {
			h := hubtest.Start(t, hubtest.Options{Configure: func(c *config.Config) {
				c.EnableRegistration = true
				c.ProfileRequiresAuth = hide
			}})
			h.CreateUser(t, "alice", "pw-alice")
			h.CreateUser(t, "dave", "pw-dave")
			h.ImportDirectory(t, hubtest.Without(hubtest.People(), "dave"))
			if _, err := h.Trust.Refresh(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			avail := func(who string) (int, map[string]any) {
				return call(t, h.URL, "", "GET", "/_matrix/client/v3/register/available?username="+hubtest.Localpart(who), nil)
			}
			if hide {
				for _, who := range []string{"alice", "dave", "eve"} {
					if st, out := avail(who); st != 200 || out["available"] != true {
						t.Fatalf("register/available %s: %d %v", who, st, out)
					}
				}
				return
			}
			st, out := avail("alice")
			wantErr(t, "taken", st, out, 400, "M_USER_IN_USE")
			if st, out := avail("eve"); st != 200 || out["available"] != true {
				t.Fatalf("free: %d %v", st, out)
			}
			// Public profiles, but only of reachable users.
			p := func(who string) (int, map[string]any) {
				return call(t, h.URL, "", "GET", "/_matrix/client/v3/profile/"+url.PathEscape(string(h.UserID(who))), nil)
			}
			if st, out := p("alice"); st != 200 || out["displayname"] == nil {
				t.Fatalf("public profile: %d %v", st, out)
			}
			for _, who := range []string{"dave", "eve"} {
				st, out := p(who)
				wantErr(t, "profile of "+who, st, out, 404, "M_NOT_FOUND")
			}
		})
	}
}
