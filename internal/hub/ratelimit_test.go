package hub_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/bridges/sdk"
	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/ratelimit"
)

// Rate limit tests run on a fake clock: buckets refill only when the test
// moves it, so no assertion depends on how fast the machine is.

// limitsOnly turns rate limiting on with every limit off but those set.
func limitsOnly(set func(c *config.Config)) hubtest.Options {
	return hubtest.Options{Configure: func(c *config.Config) {
		c.RateLimits = true
		for _, p := range []*string{&c.RCLoginAddress, &c.RCLoginAccount, &c.RCLoginFailed, &c.RCRegistration,
			&c.RCMessage, &c.RCJoins, &c.RCInvites, &c.RCMediaUpload, &c.RCUserDirectory,
			&c.RCOperatorMessage, &c.RCOperatorMembership, &c.RCOperatorMedia, &c.RCOperatorSearch} {
			*p = "off"
		}
		set(c)
	}}
}

func fakeClock(h *hubtest.Hub) *ratelimit.FakeClock {
	clock := ratelimit.NewFakeClock(time.Now())
	h.Limits.SetClock(clock)
	return clock
}

// callH makes one Client-Server request without a client library's own
// retries (mautrix retries 429s by itself), keeping the headers.
func callH(t *testing.T, h *hubtest.Hub, method, path, token string, body any, header ...string) rawResp {
	t.Helper()
	return do(t, h.URL, method, path, token, body, header...)
}

// wantLimited checks a 429 M_LIMIT_EXCEEDED answer asking for retry.
func wantLimited(t *testing.T, what string, r rawResp, retry time.Duration) {
	t.Helper()
	secs := fmt.Sprint(int64((retry + time.Second - 1) / time.Second))
	if r.status != http.StatusTooManyRequests || r.body["errcode"] != "M_LIMIT_EXCEEDED" ||
		r.body["retry_after_ms"] != float64(retry.Milliseconds()) || r.header.Get("Retry-After") != secs {
		t.Fatalf("%s: got %d %v (Retry-After %q); want 429 M_LIMIT_EXCEEDED retry_after_ms %d", what, r.status, r.body,
			r.header.Get("Retry-After"), retry.Milliseconds())
	}
}

func wantStatus(t *testing.T, what string, r rawResp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got %d %v, want %d", what, r.status, r.body, status)
	}
}

// refusals waits until the trail holds want entries of code by action,
// and fails if it holds more.
func refusals(t *testing.T, h *hubtest.Hub, code string, want map[string]int) []audit.Entry {
	t.Helper()
	var got []audit.Entry
	hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		got = got[:0]
		n := map[string]int{}
		for _, e := range auditEntries(t, h.Store) {
			if e.Reason == code {
				got = append(got, e)
				n[e.Action]++
			}
		}
		for a, c := range want {
			if n[a] != c {
				return fmt.Errorf("%s entries by action: %v, want %v", code, n, want)
			}
		}
		for a, c := range n {
			if want[a] != c {
				return fmt.Errorf("%s entries by action: %v, want %v", code, n, want)
			}
		}
		return nil
	})
	return got
}

// TestLoginLimits: wrong passwords lock the account out, longer each
// time, and are audited with the account and never the password; a
// success resets; login attempts are also limited per client address
// (behind a trusted proxy, the address it forwards).
func TestLoginLimits(t *testing.T) {
	h := hubtest.Start(t, limitsOnly(func(c *config.Config) {
		c.RCLoginFailed = "1/min burst 3"
		c.RCLoginFailedMaxLockout = 4 * time.Minute
		c.RCLoginAddress = "10/min burst 3"
		c.TrustedProxies = "127.0.0.1, ::1"
	}))
	clock := fakeClock(h)
	h.CreateUser(t, "alice", "right-password")
	h.CreateUser(t, "bob", "bob-password")
	const marker = "Wr0ng-Passw0rd-Marker"
	addr := 0
	login := func(user, password string) rawResp {
		t.Helper()
		addr++ // a new address each time: the per-address limit stays out of the way
		return callH(t, h, "POST", "/_matrix/client/v3/login", "", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": password,
		}, "X-Forwarded-For", fmt.Sprintf("192.0.2.%d", addr))
	}
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")
	wrong := func(what string) {
		t.Helper()
		r := login(alice, marker)
		if r.status != 403 || r.body["errcode"] != "M_FORBIDDEN" || r.body["error"] != "Invalid username or password" {
			t.Fatalf("%s: got %d %v, want 403 M_FORBIDDEN Invalid username or password", what, r.status, r.body)
		}
	}

	wrong("1st wrong password")
	wrong("2nd wrong password")
	wrong("3rd wrong password") // locks for 1/rate = 1 min
	wantLimited(t, "the right password while locked", login(alice, "right-password"), time.Minute)
	clock.Advance(20 * time.Second)
	wantLimited(t, "a wrong one while locked (not counted)", login(alice, marker), 40*time.Second)
	wantStatus(t, "another account", login(bob, "bob-password"), 200)
	clock.Advance(40 * time.Second)
	wantStatus(t, "the right password after the lockout", login(alice, "right-password"), 200)

	// The success forgot the failures.
	wrong("1st wrong password after a success")
	wrong("2nd wrong password after a success")
	wantStatus(t, "not locked after a success", login(alice, "right-password"), 200)

	// Each failure after a lockout doubles it.
	wrong("a")
	wrong("b")
	wrong("c") // 1 min
	clock.Advance(time.Minute)
	wrong("d") // 2 min
	wantLimited(t, "the doubled lockout", login(alice, "right-password"), 2*time.Minute)
	clock.Advance(2 * time.Minute)
	wantStatus(t, "after the doubled lockout", login(alice, "right-password"), 200)

	// Someone typing the password in the username field.
	if r := login(marker, "x"); r.status != 403 {
		t.Fatalf("unknown user: %d %v", r.status, r.body)
	}

	// Per address: three attempts a minute from one address, whatever
	// their outcome; other addresses are not affected.
	from := func(ip, user, password string) rawResp {
		return callH(t, h, "POST", "/_matrix/client/v3/login", "", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": password,
		}, "X-Forwarded-For", "6.6.6.6, "+ip)
	}
	for i := range 3 {
		wantStatus(t, fmt.Sprint("attempt ", i+1, " from one address"), from("198.51.100.7", "nobody", "nope"), 403)
	}
	wantLimited(t, "4th attempt from one address", from("198.51.100.7", bob, "bob-password"), 6*time.Second)
	wantLimited(t, "5th attempt from one address", from("198.51.100.7", bob, "bob-password"), 6*time.Second)
	wantStatus(t, "another address", from("198.51.100.8", bob, "bob-password"), 200)

	// Every wrong password is audited with the account (unknown names
	// without one); each lockout and the address limit once.
	bad := refusals(t, h, "EIMIS_BAD_CREDENTIALS", map[string]int{"login": 13})
	actors := map[string]int{}
	for _, e := range bad {
		actors[e.Actor]++
	}
	if actors[string(h.UserID("alice"))] != 9 || actors[""] != 4 {
		t.Errorf("failed logins by actor: %v", actors)
	}
	limited := refusals(t, h, "EIMIS_RATE_LIMITED", map[string]int{"login": 3})
	var byAddress int
	for _, e := range limited {
		if e.Target == "198.51.100.7" {
			byAddress++
		}
	}
	if byAddress != 1 {
		t.Errorf("address limit entries: %+v", limited)
	}
	for _, e := range auditEntries(t, h.Store) {
		if strings.Contains(fmt.Sprintf("%+v", e), marker) {
			t.Fatalf("the password reached the audit trail: %+v", e)
		}
	}
}

// TestClientActionLimits: sends, joins, invites (createRoom's too),
// directory searches, uploads and logins of one account are limited per
// account; the refused request does nothing; one refusal per episode is
// audited; the bucket refills with time.
func TestClientActionLimits(t *testing.T) {
	h := hubtest.Start(t, limitsOnly(func(c *config.Config) {
		c.RCMessage = "1/min burst 3"
		c.RCJoins = "1/min burst 2"
		c.RCInvites = "1/min burst 3"
		c.RCUserDirectory = "1/min burst 2"
		c.RCMediaUpload = "1/min burst 2"
		c.RCLoginAccount = "1/min burst 2"
	}))
	clock := fakeClock(h)
	alice, bob, carol := h.NewUser(t, "alice"), h.NewUser(t, "bob"), h.NewUser(t, "carol")
	for _, n := range []string{"dave", "eve"} {
		h.CreateUser(t, n, "pw-"+n)
	}
	at := alice.AccessToken

	// createRoom: a join and one invite.
	r := callH(t, h, "POST", "/_matrix/client/v3/createRoom", at, map[string]any{"invite": []string{string(bob.UserID)}})
	wantStatus(t, "create room", r, 200)
	room := r.body["room_id"].(string)
	wantStatus(t, "bob joins", callH(t, h, "POST", "/_matrix/client/v3/rooms/"+room+"/join", bob.AccessToken, map[string]any{}), 200)

	// Sends.
	send := func(tok, txn string) rawResp {
		return callH(t, h, "PUT", "/_matrix/client/v3/rooms/"+room+"/send/m.room.message/"+txn, tok, map[string]any{"msgtype": "m.text", "body": txn})
	}
	for _, txn := range []string{"t1", "t2", "t3"} {
		wantStatus(t, "send "+txn, send(at, txn), 200)
	}
	wantLimited(t, "4th send", send(at, "t4"), time.Minute)
	wantLimited(t, "5th send", send(at, "t5"), time.Minute)
	wantStatus(t, "another user's send", send(bob.AccessToken, "b1"), 200)
	msgs := callH(t, h, "GET", "/_matrix/client/v3/rooms/"+room+"/messages?dir=b&limit=50", at, nil)
	bodies := map[string]bool{}
	for _, e := range msgs.body["chunk"].([]any) {
		if ev := e.(map[string]any); ev["type"] == "m.room.message" {
			bodies[ev["content"].(map[string]any)["body"].(string)] = true
		}
	}
	if len(bodies) != 4 || bodies["t4"] || bodies["t5"] {
		t.Fatalf("messages stored: %v; want t1-t3 and b1", bodies)
	}

	// Invites: 1 spent by createRoom, 2 left.
	invite := func(who string) rawResp {
		return callH(t, h, "POST", "/_matrix/client/v3/rooms/"+room+"/invite", at, map[string]any{"user_id": string(h.UserID(who))})
	}
	wantStatus(t, "invite carol", invite("carol"), 200)
	wantStatus(t, "invite dave", invite("dave"), 200)
	wantLimited(t, "invite eve", invite("eve"), time.Minute)
	r = callH(t, h, "POST", "/_matrix/client/v3/createRoom", at, map[string]any{"invite": []string{string(h.UserID("eve"))}})
	wantLimited(t, "createRoom with an invite", r, time.Minute)
	joined := callH(t, h, "GET", "/_matrix/client/v3/joined_rooms", at, nil)
	if n := len(joined.body["joined_rooms"].([]any)); n != 1 {
		t.Fatalf("alice is in %d rooms after a refused createRoom", n)
	}

	// Joins: carol's public room; bob has joined once already.
	r = callH(t, h, "POST", "/_matrix/client/v3/createRoom", carol.AccessToken, map[string]any{"preset": "public_chat"})
	wantStatus(t, "carol creates a public room", r, 200)
	public := r.body["room_id"].(string)
	wantStatus(t, "bob's 2nd join", callH(t, h, "POST", "/_matrix/client/v3/join/"+public, bob.AccessToken, map[string]any{}), 200)
	wantLimited(t, "bob's 3rd join", callH(t, h, "POST", "/_matrix/client/v3/join/"+public, bob.AccessToken, map[string]any{}), time.Minute)

	// Directory searches.
	search := func() rawResp {
		return callH(t, h, "POST", "/_matrix/client/v3/user_directory/search", at, map[string]any{"search_term": "test"})
	}
	wantStatus(t, "search 1", search(), 200)
	wantStatus(t, "search 2", search(), 200)
	wantLimited(t, "search 3", search(), time.Minute)

	// Uploads, and the reservation of a media ID.
	upload := func() rawResp {
		return callH(t, h, "POST", "/_matrix/media/v3/upload?filename=x.txt", at, []byte("compte rendu"), "Content-Type", "text/plain")
	}
	wantStatus(t, "upload 1", upload(), 200)
	wantStatus(t, "upload 2", upload(), 200)
	wantLimited(t, "upload 3", upload(), time.Minute)
	wantLimited(t, "create", callH(t, h, "POST", "/_matrix/media/v1/create", at, nil), time.Minute)

	// Logins of one account (any outcome).
	login := func() rawResp {
		return callH(t, h, "POST", "/_matrix/client/v3/login", "", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": hubtest.Localpart("dave")}, "password": "pw-dave",
		})
	}
	wantStatus(t, "login 1", login(), 200)
	wantStatus(t, "login 2", login(), 200)
	wantLimited(t, "login 3", login(), time.Minute)

	clock.Advance(time.Minute)
	wantStatus(t, "a send after the refill", send(at, "t6"), 200)
	wantLimited(t, "and the next", send(at, "t7"), time.Minute)

	entries := refusals(t, h, "EIMIS_RATE_LIMITED", map[string]int{
		"event.send": 2, "room.invite": 1, "room.join": 1, "directory.search": 1, "media.upload": 1, "login": 1,
	})
	for _, e := range entries {
		if e.Action == "event.send" && (e.Actor != string(alice.UserID) || e.RoomID != room) {
			t.Errorf("send refusal entry: %+v", e)
		}
		if e.Action == "room.join" && e.Actor != string(bob.UserID) {
			t.Errorf("join refusal entry: %+v", e)
		}
	}
}

// TestAppserviceOperatorLimit: an appservice is limited by its own
// operator limit, shared by every user it acts as, not by theirs.
func TestAppserviceOperatorLimit(t *testing.T) {
	fake := newFakeAS(0)
	defer fake.Close()
	file, asToken, _ := fakeRegistration(fake.URL)
	h := hubtest.Start(t, limitsOnly(func(c *config.Config) {
		c.RCMessage = "1/min burst 2"
		c.RCOperatorMessage = "1/min burst 5"
	}))
	clock := fakeClock(h)
	addAppservice(t, file, h)
	as := asClient{url: h.URL, token: asToken}
	var puppets []string
	for _, n := range []string{"bob", "carol"} {
		approve(t, "fake", n, h)
		p := "fake_" + hubtest.Localpart(n)
		if st, body := as.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"type": "m.login.application_service", "username": p}); st != 200 {
			t.Fatalf("register %s: %d %v", p, st, body)
		}
		puppets = append(puppets, string(id.NewUserID(p, h.Config.ServerName)))
	}
	alice := h.NewUser(t, "alice")
	r := callH(t, h, "POST", "/_matrix/client/v3/createRoom", alice.AccessToken, map[string]any{"invite": puppets})
	wantStatus(t, "create room", r, 200)
	room := r.body["room_id"].(string)
	for _, p := range puppets {
		if st, body := as.do(t, "POST", "/_matrix/client/v3/join/"+room, p, map[string]any{}); st != 200 {
			t.Fatalf("%s joins: %d %v", p, st, body)
		}
	}
	send := func(puppet, txn string) (int, map[string]any) {
		return as.do(t, "PUT", "/_matrix/client/v3/rooms/"+room+"/send/m.room.message/"+txn, puppet, map[string]any{"msgtype": "m.text", "body": txn})
	}
	// Five sends as one puppet: beyond a user's burst of 2, within the
	// operator's 5.
	for i := range 5 {
		if st, body := send(puppets[0], fmt.Sprint("p", i)); st != 200 {
			t.Fatalf("appservice send %d: %d %v", i, st, body)
		}
	}
	// The operator's bucket is shared by its puppets.
	st, body := send(puppets[1], "q1")
	if st != 429 || body["errcode"] != "M_LIMIT_EXCEEDED" || body["retry_after_ms"] != float64(60000) {
		t.Fatalf("6th appservice send: %d %v", st, body)
	}
	// A person is still limited by the per-user limit.
	for i := range 2 {
		wantStatus(t, "alice's send", callH(t, h, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/a%d", room, i), alice.AccessToken, map[string]any{"msgtype": "m.text", "body": "x"}), 200)
	}
	wantLimited(t, "alice's 3rd send", callH(t, h, "PUT", "/_matrix/client/v3/rooms/"+room+"/send/m.room.message/a3", alice.AccessToken, map[string]any{"msgtype": "m.text", "body": "x"}), time.Minute)
	clock.Advance(time.Minute)
	if st, body := send(puppets[1], "q2"); st != 200 {
		t.Fatalf("appservice send after the refill: %d %v", st, body)
	}
	entries := refusals(t, h, "EIMIS_RATE_LIMITED", map[string]int{"event.send": 2})
	actors := map[string]bool{}
	for _, e := range entries {
		actors[e.Actor] = true
	}
	if !actors[puppets[1]] || !actors[string(alice.UserID)] {
		t.Errorf("refusal entries: %+v", entries)
	}
}

// TestBridgeOperatorLimit: a bridge is limited per bridge, not by the
// limits of the practitioners it acts for; its refusal is the typed
// EIMIS_RATE_LIMITED with the wait.
func TestBridgeOperatorLimit(t *testing.T) {
	h := hubtest.Start(t, limitsOnly(func(c *config.Config) {
		c.RCMessage = "1/min burst 1"
		c.RCOperatorMessage = "1/min burst 3"
		insecureBinds(c)
	}))
	clock := fakeClock(h)
	ctx := ctxT(t)
	tokA, tokB := addBridges(t, h)
	appA, appB := startApp(t, h.URL, tokA), startApp(t, h.URL, tokB)
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")
	if _, err := appA.Bind(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := appB.Bind(ctx, bob); err != nil {
		t.Fatal(err)
	}
	room, err := appA.CreateRoom(ctx, sdk.CreateRoom{As: alice, Name: "Staff", Invite: []string{bob}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := appA.SendText(ctx, alice, room, fmt.Sprint("a", i), "message"); err != nil {
			t.Fatalf("bridge send %d: %v", i, err)
		}
	}
	_, err = appA.SendText(ctx, alice, room, "a3", "message")
	var e *sdk.Error
	if !errors.Is(err, sdk.ErrRateLimited) || !errors.As(err, &e) || e.RetryAfter != time.Minute {
		t.Fatalf("4th bridge send: %v", err)
	}
	// Another bridge has its own bucket.
	if _, err := appB.Join(ctx, bob, room); err != nil {
		t.Fatal(err)
	}
	if _, err := appB.SendText(ctx, bob, room, "b0", "message"); err != nil {
		t.Fatalf("the other bridge's send: %v", err)
	}
	clock.Advance(time.Minute)
	if _, err := appA.SendText(ctx, alice, room, "a3", "message"); err != nil {
		t.Fatalf("bridge send after the refill: %v", err)
	}
	entries := refusals(t, h, "EIMIS_RATE_LIMITED", map[string]int{"event.send": 1})
	if entries[0].Actor != "operator:acme" {
		t.Errorf("refusal entry: %+v", entries[0])
	}
}
