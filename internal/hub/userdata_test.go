package hub_test

import (
	"net/url"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// TestUserPathIsTheCaller: everything under /user/{userId}/ refuses a
// path naming someone else (it used to answer with the caller's own
// data), and nothing is stored or changed for either user.
func TestUserPathIsTheCaller(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	room, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	r := url.PathEscape(string(room.RoomID))
	userPath := func(u string) string { return "/_matrix/client/v3/user/" + url.PathEscape(u) }
	bobP := userPath(string(bob.UserID))
	// Bob's own data.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"PUT", bobP + "/rooms/" + r + "/tags/u.work", map[string]any{"order": 0.5}},
		{"PUT", bobP + "/account_data/org.example.notes", map[string]any{"secret": "bob"}},
		{"PUT", bobP + "/rooms/" + r + "/account_data/org.example.notes", map[string]any{"secret": "bob-room"}},
	} {
		if st, out := call(t, h.URL, bob.AccessToken, c.method, c.path, c.body); st != 200 {
			t.Fatalf("bob %s %s: %d %v", c.method, c.path, st, out)
		}
	}
	st, out := call(t, h.URL, bob.AccessToken, "POST", bobP+"/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 5}}})
	bobFilter, _ := out["filter_id"].(string)
	if st != 200 || bobFilter == "" {
		t.Fatalf("bob's filter: %d %v", st, out)
	}
	// Alice has some of her own, which must not be what she gets back.
	aliceP := userPath(string(alice.UserID))
	if st, out := call(t, h.URL, alice.AccessToken, "PUT", aliceP+"/rooms/"+r+"/tags/u.alice", map[string]any{}); st != 200 {
		t.Fatalf("alice's tag: %d %v", st, out)
	}
	posBefore, err := h.Store.MaxPos(ctx)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", bobP + "/rooms/" + r + "/tags", nil},
		{"PUT", bobP + "/rooms/" + r + "/tags/u.evil", map[string]any{}},
		{"DELETE", bobP + "/rooms/" + r + "/tags/u.work", nil},
		{"GET", bobP + "/account_data/org.example.notes", nil},
		{"PUT", bobP + "/account_data/org.example.notes", map[string]any{"secret": "alice"}},
		{"GET", bobP + "/rooms/" + r + "/account_data/org.example.notes", nil},
		{"PUT", bobP + "/rooms/" + r + "/account_data/org.example.notes", map[string]any{"secret": "alice"}},
		{"POST", bobP + "/filter", map[string]any{}},
		{"GET", bobP + "/filter/" + bobFilter, nil},
		{"GET", userPath("@nobody:hub.test") + "/rooms/" + r + "/tags", nil},
	} {
		st, out := call(t, h.URL, alice.AccessToken, c.method, c.path, c.body)
		wantErr(t, "alice "+c.method+" "+c.path, st, out, 403, "M_FORBIDDEN")
	}
	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		errcode            string
	}{
		{"not a room ID", "GET", aliceP + "/rooms/not-a-room/tags", nil, 400, "M_INVALID_PARAM"},
		{"fully_read as account data", "PUT", aliceP + "/rooms/" + r + "/account_data/m.fully_read", map[string]any{"event_id": "$x"}, 405, "M_BAD_JSON"},
		{"push rules as account data", "PUT", aliceP + "/account_data/m.push_rules", map[string]any{}, 405, "M_BAD_JSON"},
		{"tag order not a number", "PUT", aliceP + "/rooms/" + r + "/tags/u.x", map[string]any{"order": "first"}, 400, "M_BAD_JSON"},
	} {
		st, out := call(t, h.URL, alice.AccessToken, c.method, c.path, c.body)
		wantErr(t, c.name, st, out, c.status, c.errcode)
	}
	if after, err := h.Store.MaxPos(ctx); err != nil || after != posBefore {
		t.Fatalf("refused requests stored something: position %d -> %d (%v)", posBefore, after, err)
	}

	// Bob's data is intact, and alice's is hers.
	st, out = call(t, h.URL, bob.AccessToken, "GET", bobP+"/rooms/"+r+"/tags", nil)
	tags, _ := out["tags"].(map[string]any)
	if st != 200 || len(tags) != 1 || tags["u.work"] == nil {
		t.Fatalf("bob's tags: %d %v", st, out)
	}
	if st, out := call(t, h.URL, bob.AccessToken, "GET", bobP+"/account_data/org.example.notes", nil); st != 200 || out["secret"] != "bob" {
		t.Fatalf("bob's account data: %d %v", st, out)
	}
	st, out = call(t, h.URL, alice.AccessToken, "GET", aliceP+"/rooms/"+r+"/tags", nil)
	tags, _ = out["tags"].(map[string]any)
	if st != 200 || len(tags) != 1 || tags["u.alice"] == nil {
		t.Fatalf("alice's tags: %d %v", st, out)
	}
	st, out = call(t, h.URL, alice.AccessToken, "GET", aliceP+"/account_data/org.example.notes", nil)
	wantErr(t, "alice has no notes", st, out, 404, "M_NOT_FOUND")
}

// TestFiltersAreValidated: a filter the spec's schema does not allow is
// refused and not stored; /sync refuses such an inline filter, and a bad
// filter stored before the check no longer breaks /sync.
func TestFiltersAreValidated(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	fp := "/_matrix/client/v3/user/" + url.PathEscape(string(alice.UserID)) + "/filter"
	post := func(body any) (int, map[string]any) { return call(t, h.URL, alice.AccessToken, "POST", fp, body) }
	st, out := post(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 20}, "state": map[string]any{"lazy_load_members": true}}})
	first, _ := out["filter_id"].(string)
	if st != 200 || first == "" {
		t.Fatalf("Element's filter: %d %v", st, out)
	}
	bad := []struct {
		name    string
		body    string
		errcode string
	}{
		{"not JSON", `{"room":`, "M_NOT_JSON"},
		{"not an object", `[1,2]`, "M_BAD_JSON"},
		{"limit as a string", `{"room":{"timeline":{"limit":"ten"}}}`, "M_BAD_JSON"},
		{"limit quoted number", `{"room":{"timeline":{"limit":"10"}}}`, "M_BAD_JSON"},
		{"negative limit", `{"room":{"timeline":{"limit":-1}}}`, "M_BAD_JSON"},
		{"fractional limit", `{"room":{"timeline":{"limit":2.5}}}`, "M_BAD_JSON"},
		{"huge limit", `{"room":{"timeline":{"limit":1e300}}}`, "M_BAD_JSON"},
		{"presence limit", `{"presence":{"limit":true}}`, "M_BAD_JSON"},
		{"room is a list", `{"room":[]}`, "M_BAD_JSON"},
		{"types not strings", `{"room":{"timeline":{"types":[1]}}}`, "M_BAD_JSON"},
		{"event_fields a string", `{"event_fields":"content.body"}`, "M_BAD_JSON"},
		{"event_format unknown", `{"event_format":"raw"}`, "M_BAD_JSON"},
		{"include_leave a string", `{"room":{"include_leave":"yes"}}`, "M_BAD_JSON"},
		{"lazy_load_members a number", `{"room":{"state":{"lazy_load_members":1}}}`, "M_BAD_JSON"},
		{"rooms not a list", `{"room":{"rooms":"!a:hub.test"}}`, "M_BAD_JSON"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			st, out := post(c.body)
			wantErr(t, "POST "+c.name, st, out, 400, c.errcode)
			if c.body[0] != '{' {
				return // in a /sync URL, a filter ID rather than an inline filter
			}
			st, out = call(t, h.URL, alice.AccessToken, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+url.QueryEscape(c.body), nil)
			wantErr(t, "inline "+c.name, st, out, 400, c.errcode)
		})
	}
	// Nothing was stored: the next filter takes the next ID.
	st, out = post(map[string]any{})
	next, _ := out["filter_id"].(string)
	if n1, _ := strconv.Atoi(first); st != 200 || next != strconv.Itoa(n1+1) {
		t.Fatalf("next filter ID %q after %q: refused filters were stored? (%d %v)", next, first, st, out)
	}
	// Valid inline and stored filters sync.
	for _, f := range []string{first, `{"room":{"timeline":{"limit":3}}}`, `{"org.example.extension":{"x":1}}`} {
		if st, out := call(t, h.URL, alice.AccessToken, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+url.QueryEscape(f), nil); st != 200 {
			t.Fatalf("sync with %s: %d %v", f, st, out)
		}
	}
	// A filter stored before the check: /sync ignores it instead of
	// failing every time.
	id, err := h.Store.PutFilter(ctx, string(alice.UserID), []byte(`{"room":{"timeline":{"limit":"ten"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if st, out := call(t, h.URL, alice.AccessToken, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+id, nil); st != 200 || out["next_batch"] == nil {
		t.Fatalf("sync with a bad stored filter: %d %v", st, out)
	}
	st, out = call(t, h.URL, alice.AccessToken, "GET", "/_matrix/client/v3/sync?timeout=0&filter=999999", nil)
	wantErr(t, "unknown filter", st, out, 400, "M_INVALID_PARAM")
}
