package hub_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/store"
)

// TestAliasesAreValidated: aliases follow the spec's grammar and are on
// this server, whichever endpoint names them; nothing is stored for a
// refused one.
func TestAliasesAreValidated(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	dir := func(alias string) string { return "/_matrix/client/v3/directory/room/" + url.PathEscape(alias) }
	for _, c := range []struct {
		name, alias string
		getStatus   int // a malformed alias is 400 on GET too; a remote one 404
	}{
		{"space", "#bad alias:hub.test", 400},
		{"tab", "#bad\talias:hub.test", 400},
		{"newline", "#bad\nalias:hub.test", 400},
		{"NUL", "#bad\x00:hub.test", 400},
		{"empty localpart", "#:hub.test", 400},
		{"no sigil", "room:hub.test", 400},
		{"room ID sigil", "!room:hub.test", 400},
		{"no server", "#room", 400},
		{"empty server", "#room:", 400},
		{"colon in localpart", "#a:b:hub.test", 400},
		{"longer than 255 bytes", "#" + strings.Repeat("a", 246) + ":hub.test", 400},
		{"another server", "#room:other.example", 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, out := call(t, h.URL, alice.AccessToken, "PUT", dir(c.alias), map[string]any{"room_id": room.RoomID})
			wantErr(t, "PUT", st, out, 400, "M_INVALID_PARAM")
			st, out = call(t, h.URL, "", "GET", dir(c.alias), nil)
			want := map[int]string{400: "M_INVALID_PARAM", 404: "M_NOT_FOUND"}[c.getStatus]
			wantErr(t, "GET", st, out, c.getStatus, want)
			if _, err := h.Store.ResolveAlias(ctx, c.alias); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a refused alias was stored: %v", err)
			}
		})
	}
	// The longest alias allowed, 255 bytes.
	longest := "#" + strings.Repeat("a", 245) + ":hub.test"
	if st, out := call(t, h.URL, alice.AccessToken, "PUT", dir(longest), map[string]any{"room_id": room.RoomID}); st != 200 {
		t.Fatalf("255-byte alias: %d %v", st, out)
	}
	if st, out := call(t, h.URL, "", "GET", dir(longest), nil); st != 200 || out["room_id"] != string(room.RoomID) {
		t.Fatalf("resolve: %d %v", st, out)
	}
	st, out := call(t, h.URL, alice.AccessToken, "PUT", dir("#unicodé-ok:hub.test"), map[string]any{"room_id": "not-a-room"})
	wantErr(t, "bad room_id", st, out, 400, "M_INVALID_PARAM")

	// createRoom's room_alias_name: refused before any room exists.
	before, err := alice.JoinedRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bad alias", "a:b", "tab\there", "nul\x00", strings.Repeat("a", 246)} {
		st, out := call(t, h.URL, alice.AccessToken, "POST", "/_matrix/client/v3/createRoom", map[string]any{"room_alias_name": name})
		wantErr(t, "createRoom "+name, st, out, 400, "M_INVALID_PARAM")
	}
	after, err := alice.JoinedRooms(ctx)
	if err != nil || len(after.JoinedRooms) != len(before.JoinedRooms) {
		t.Fatalf("refused createRoom made a room: %d -> %d (%v)", len(before.JoinedRooms), len(after.JoinedRooms), err)
	}
	if st, out := call(t, h.URL, alice.AccessToken, "POST", "/_matrix/client/v3/createRoom", map[string]any{"room_alias_name": "cardio-garde"}); st != 200 {
		t.Fatalf("valid alias name: %d %v", st, out)
	}
}

// TestReadMarkersNeedMembership: receipts and read markers (the fully-read
// marker is account data underneath) are refused outside a room the user
// is joined to, and nothing is stored.
func TestReadMarkersNeedMembership(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob") // never in the room
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.SendText(ctx, room.RoomID, "hello")
	if err != nil {
		t.Fatal(err)
	}
	r := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room.RoomID))
	ev := string(sent.EventID)
	posBefore, err := h.Store.MaxPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		body       any
	}{
		{"read_markers fully_read", "/read_markers", map[string]any{"m.fully_read": ev}},
		{"read_markers all", "/read_markers", map[string]any{"m.fully_read": ev, "m.read": ev, "m.read.private": ev}},
		{"receipt m.read", "/receipt/m.read/" + url.PathEscape(ev), map[string]any{}},
		{"receipt m.fully_read", "/receipt/m.fully_read/" + url.PathEscape(ev), map[string]any{}},
	} {
		st, out := call(t, h.URL, bob.AccessToken, "POST", r+c.path, c.body)
		wantErr(t, c.name, st, out, 403, "M_FORBIDDEN")
	}
	for _, c := range []struct {
		name, path string
		body       any
	}{
		{"marker not an event ID", "/read_markers", map[string]any{"m.fully_read": "hello"}},
		{"marker not a string", "/read_markers", map[string]any{"m.read": 42}},
		{"receipt not an event ID", "/receipt/m.read/" + strings.Repeat("x", 300), map[string]any{}},
		{"unknown receipt type", "/receipt/m.seen/" + url.PathEscape(ev), map[string]any{}},
	} {
		st, out := call(t, h.URL, alice.AccessToken, "POST", r+c.path, c.body)
		code := "M_INVALID_PARAM"
		if c.name == "marker not a string" {
			code = "M_BAD_JSON"
		}
		wantErr(t, c.name, st, out, 400, code)
	}
	if after, err := h.Store.MaxPos(ctx); err != nil || after != posBefore {
		t.Fatalf("refused markers stored something: position %d -> %d (%v)", posBefore, after, err)
	}
	if _, err := h.Store.GetAccountData(ctx, string(bob.UserID), string(room.RoomID), "m.fully_read"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob's fully-read marker was stored: %v", err)
	}
	// A member may (Element's old "m.hidden" key is ignored).
	if st, out := call(t, h.URL, alice.AccessToken, "POST", r+"/read_markers", map[string]any{"m.fully_read": ev, "m.read": ev, "m.hidden": false}); st != 200 {
		t.Fatalf("member's read markers: %d %v", st, out)
	}
	if ad, err := h.Store.GetAccountData(ctx, string(alice.UserID), string(room.RoomID), "m.fully_read"); err != nil || !strings.Contains(string(ad.Content), ev) {
		t.Fatalf("alice's marker: %v %v", ad, err)
	}
}

// TestKickBanForgetSemantics: a kick is of someone in the room, an unban
// of someone banned (403 otherwise, nothing stored); a ban may come
// first; a room is forgotten only once left.
func TestKickBanForgetSemantics(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	h.CreateUser(t, "carol", "pw-carol") // never in the room
	dave := h.NewUser(t, "dave")         // invited only
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID, dave.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	r := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room.RoomID))
	carol := string(h.UserID("carol"))
	membership := func(u string) string {
		ev, err := h.Store.CurrentStateEvent(ctx, string(room.RoomID), "m.room.member", u)
		if errors.Is(err, store.ErrNotFound) {
			return ""
		} else if err != nil {
			t.Fatal(err)
		}
		return ev.Membership
	}
	refused := []struct {
		name, who, action, target string
		status                    int
		errcode                   string
	}{
		{"kick a non-member", "alice", "kick", carol, 403, "M_FORBIDDEN"},
		{"unban a non-member", "alice", "unban", carol, 403, "M_FORBIDDEN"},
		{"unban a member", "alice", "unban", string(bob.UserID), 403, "M_FORBIDDEN"},
		{"unban oneself", "alice", "unban", string(alice.UserID), 403, "M_FORBIDDEN"},
		{"kick not a user ID", "alice", "kick", "carol", 400, "M_INVALID_PARAM"},
		{"ban not a user ID", "alice", "ban", "@", 400, "M_INVALID_PARAM"},
		{"outsider kicks a member", "carol", "kick", string(bob.UserID), 403, "M_FORBIDDEN"},
	}
	carolCli := h.Client(t, "carol", "pw-carol")
	tokens := map[string]string{"alice": alice.AccessToken, "carol": carolCli.AccessToken}
	posBefore, err := h.Store.MaxPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range refused {
		st, out := call(t, h.URL, tokens[c.who], "POST", r+"/"+c.action, map[string]any{"user_id": c.target})
		wantErr(t, c.name, st, out, c.status, c.errcode)
	}
	if after, err := h.Store.MaxPos(ctx); err != nil || after != posBefore {
		t.Fatalf("refused membership changes stored something: position %d -> %d (%v)", posBefore, after, err)
	}
	if membership(carol) != "" || membership(string(bob.UserID)) != "join" {
		t.Fatalf("memberships changed: carol %q bob %q", membership(carol), membership(string(bob.UserID)))
	}

	// A pre-emptive ban is allowed; a kick does not lift it; an unban does.
	if st, out := call(t, h.URL, alice.AccessToken, "POST", r+"/ban", map[string]any{"user_id": carol}); st != 200 {
		t.Fatalf("ban a non-member: %d %v", st, out)
	}
	st, out := call(t, h.URL, alice.AccessToken, "POST", r+"/kick", map[string]any{"user_id": carol})
	wantErr(t, "kick a banned user", st, out, 403, "M_FORBIDDEN")
	if m := membership(carol); m != "ban" {
		t.Fatalf("carol is %q after a refused kick, want ban", m)
	}
	if st, out := call(t, h.URL, alice.AccessToken, "POST", r+"/unban", map[string]any{"user_id": carol}); st != 200 || membership(carol) != "leave" {
		t.Fatalf("unban: %d %v, carol %q", st, out, membership(carol))
	}

	// Forget: refused while in the room (joined or invited).
	forget := func(tok string) (int, map[string]any) {
		return call(t, h.URL, tok, "POST", r+"/forget", map[string]any{})
	}
	st, out = forget(bob.AccessToken)
	wantErr(t, "forget while joined", st, out, 400, "M_UNKNOWN")
	st, out = forget(dave.AccessToken)
	wantErr(t, "forget while invited", st, out, 400, "M_UNKNOWN")
	if membership(string(bob.UserID)) != "join" || membership(string(dave.UserID)) != "invite" {
		t.Fatal("a refused forget changed a membership")
	}
	if st, out := call(t, h.URL, alice.AccessToken, "POST", r+"/kick", map[string]any{"user_id": bob.UserID}); st != 200 {
		t.Fatalf("kick a member: %d %v", st, out)
	}
	if st, out := forget(bob.AccessToken); st != 200 {
		t.Fatalf("forget after being kicked: %d %v", st, out)
	}
	if st, out := forget(carolCli.AccessToken); st != 200 {
		t.Fatalf("forget a room one never joined: %d %v", st, out)
	}
	// A forgotten room is not in a fresh sync.
	resp, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Rooms.Leave[room.RoomID]; ok {
		t.Fatal("the forgotten room is in bob's sync")
	}
	if _, ok := resp.Rooms.Join[room.RoomID]; ok {
		t.Fatal("bob is still in the room")
	}
}

// TestDirectorySearchOddInput: no search term makes the directory search
// fail (it used to answer 500 for 100k characters); a too long one is
// refused, odd characters are searched for as text, and nothing matches
// everyone.
func TestDirectorySearchOddInput(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			h := hubtest.Start(t, hubtest.Options{Dialect: dialect})
			alice := h.NewUser(t, "alice")
			h.CreateUser(t, "bob", "pw-bob")
			for _, c := range []struct {
				name, term string
				status     int
				errcode    string
			}{
				{"100k characters", strings.Repeat("a", 100_000), 400, "M_INVALID_PARAM"},
				{"257 characters", strings.Repeat("é", 257), 400, "M_INVALID_PARAM"},
				{"256 characters", strings.Repeat("b", 256), 200, ""},
				{"empty", "", 400, "M_MISSING_PARAM"},
				{"blanks", " \t\n ", 400, "M_MISSING_PARAM"},
				{"percent", "%", 200, ""},
				{"underscore", "_", 200, ""},
				{"backslash", `\`, 200, ""},
				{"quote", `'; DROP TABLE accounts; --`, 200, ""},
				{"NUL", "\x00", 200, ""},
				{"NUL inside", "zz\x00zz", 200, ""},
				{"control characters", "\x01\x02\x1b[31m", 200, ""},
				{"at sign", "@", 200, ""},
				{"colon", ":", 200, ""},
				{"bare server", ":hub.test", 200, ""},
				{"accents", "Hélène Érard", 200, ""},
				{"emoji", "🩺", 200, ""},
				{"right-to-left", "\u202ezzq", 200, ""},
				{"CJK", "医生", 200, ""},
			} {
				st, out := call(t, h.URL, alice.AccessToken, "POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": c.term, "limit": 50})
				if c.status != 200 {
					wantErr(t, c.name, st, out, c.status, c.errcode)
					continue
				}
				res, _ := out["results"].([]any)
				if st != 200 || out["results"] == nil {
					t.Fatalf("%s: %d %v", c.name, st, out)
				}
				// None of these names bob; "%" and ":" must not be wildcards.
				if len(res) != 0 {
					t.Fatalf("%s: %d results %v, want none", c.name, len(res), res)
				}
			}
			// A real search still works.
			st, out := call(t, h.URL, alice.AccessToken, "POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": "bob"})
			if res, _ := out["results"].([]any); st != 200 || len(res) != 1 {
				t.Fatalf("search bob: %d %v", st, out)
			}
		})
	}
}
