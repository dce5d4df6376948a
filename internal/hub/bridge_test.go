package hub_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/bridges/sdk"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/operators"
)

// recorder keeps what a bridge's handlers were given.
type recorder struct {
	mu      sync.Mutex
	events  []*sdk.Event
	revoked []sdk.UserRevoked
	wake    chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) onEvent(_ context.Context, ev *sdk.Event) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.poke()
	return nil
}

func (r *recorder) onRevoked(_ context.Context, u sdk.UserRevoked) {
	r.mu.Lock()
	r.revoked = append(r.revoked, u)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// waitFor waits until pred holds for the events so far.
func (r *recorder) waitFor(t *testing.T, what string, pred func(evs []*sdk.Event) bool) []*sdk.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		evs := slices.Clone(r.events)
		r.mu.Unlock()
		if pred(evs) {
			return evs
		}
		select {
		case <-r.wake:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("bridge never got %s; it got %d events", what, len(evs))
		}
	}
}

func (r *recorder) waitMessage(t *testing.T, body string) *sdk.Event {
	t.Helper()
	var found *sdk.Event
	r.waitFor(t, "message "+body, func(evs []*sdk.Event) bool {
		for _, ev := range evs {
			if m, ok := ev.Message(); ok && m.Body == body {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// messages lists the bodies of the m.room.message events received.
func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if m, ok := ev.Message(); ok {
			out = append(out, m.Body)
		}
	}
	return out
}

// bridgeApp is a vendor's bridge running the SDK, as an app would.
type bridgeApp struct {
	*sdk.Client
	rec  *recorder
	stop func()
}

func startApp(t *testing.T, hubURL, token string) *bridgeApp {
	t.Helper()
	rec := newRecorder()
	c, err := sdk.New(sdk.Config{
		URL: hubURL, Token: token, Client: "e2e-test",
		OnEvent: rec.onEvent, OnUserRevoked: rec.onRevoked,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Logger: testLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	app := &bridgeApp{Client: c, rec: rec, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}}
	t.Cleanup(app.stop)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if _, err := c.WaitConnected(wctx); err != nil {
		t.Fatalf("bridge did not connect: %v", err)
	}
	return app
}

// insecureBinds lets bridges bind without consent: the tests about
// something else than consent (consent_test.go tests it).
func insecureBinds(c *config.Config) { c.BridgeBindWithoutConsentInsecure = true }

// addBridges registers two operators, each with one bridge, and returns
// their tokens.
func addBridges(t *testing.T, h *hubtest.Hub) (string, string) {
	t.Helper()
	ctx := ctxT(t)
	var tokens []string
	for _, op := range []string{"acme", "globex"} {
		if _, err := h.Operators.Add(ctx, operators.Operator{ID: op, Name: op, ServerNames: []string{op + ".example"},
			Contact: "security@" + op + ".example"}, "test"); err != nil {
			t.Fatal(err)
		}
		tok, _, err := gateway.AddBridge(ctx, h.Store, op+"-app", op)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	return tokens[0], tokens[1]
}

// TestBridgeEndToEnd: app A (operator acme) and app B (operator globex)
// each bind a practitioner; a third practitioner uses a Matrix client.
// They talk in one room; B goes offline and resumes exactly after its
// last acknowledgement; a retried send is one event; two apps binding one
// practitioner both get their events, and a send from either is that
// same person.
func TestBridgeEndToEnd(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) { testBridgeEndToEnd(t, dialect) })
	}
}

func testBridgeEndToEnd(t *testing.T, dialect string) {
	h := hubtest.Start(t, hubtest.Options{Dialect: dialect, Configure: insecureBinds})
	ctx := ctxT(t)
	tokA, tokB := addBridges(t, h)
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")
	carol := h.NewUser(t, "carol") // a Matrix client (mautrix)

	appA := startApp(t, h.URL, tokA)
	appB := startApp(t, h.URL, tokB)
	ua, err := appA.Bind(ctx, alice)
	if err != nil {
		t.Fatalf("bind alice: %v", err)
	}
	if ua.UserID != sdk.UserID(h.UserID("alice")) || ua.DisplayName != "Alice Test - Médecin" {
		t.Fatalf("bound user = %+v", ua)
	}
	if _, err := appB.Bind(ctx, bob); err != nil {
		t.Fatalf("bind bob: %v", err)
	}

	room, err := appA.CreateRoom(ctx, sdk.CreateRoom{As: alice, Name: "Tumour board", Invite: []string{bob, string(carol.UserID)}})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	// B sees its user invited, with the room's name, and accepts.
	var invite *sdk.Event
	appB.rec.waitFor(t, "bob's invite", func(evs []*sdk.Event) bool {
		for _, ev := range evs {
			if m, ok := ev.Membership(); ok && ev.RoomID == room && m.User.IDNat() == bob && m.Membership == "invite" {
				invite = ev
				return true
			}
		}
		return false
	})
	if !slices.ContainsFunc(invite.InviteState, func(s sdk.StrippedState) bool { return s.Type == "m.room.name" }) {
		t.Errorf("invite without the room's name: %+v", invite.InviteState)
	}
	if _, err := appB.Join(ctx, bob, room); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	if _, err := carol.JoinRoomByID(ctx, id.RoomID(room)); err != nil {
		t.Fatalf("carol joins: %v", err)
	}

	// A's user writes; a retry with the same transaction ID is one event.
	ev1, err := appA.SendText(ctx, alice, room, "a-1", "hello from app A")
	if err != nil {
		t.Fatal(err)
	}
	again, err := appA.SendText(ctx, alice, room, "a-1", "hello from app A")
	if err != nil || again != ev1 {
		t.Fatalf("retried send = %s, %v; want the same event %s", again, err, ev1)
	}
	got := appB.rec.waitMessage(t, "hello from app A")
	if got.ID != ev1 || got.Sender != sdk.UserID(h.UserID("alice")) || !slices.Contains(got.Users, sdk.UserID(h.UserID("bob"))) {
		t.Fatalf("B got %+v", got)
	}
	_, seen := syncUntil(t, carol, "", hasBody("hello from app A"))
	n := 0
	for _, e := range seen {
		if e.ID == id.EventID(ev1) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the Matrix client saw the retried message %d times", n)
	}

	// The Matrix client's reply reaches both bridges.
	if _, err := carol.SendMessageEvent(ctx, id.RoomID(room), event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": "reply from Matrix",
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": ev1}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, app := range []*bridgeApp{appA, appB} {
		ev := app.rec.waitMessage(t, "reply from Matrix")
		if m, _ := ev.Message(); m.ReplyTo != ev1 || ev.Sender != sdk.UserID(carol.UserID) {
			t.Errorf("reply as a bridge got it: %+v %+v", ev, m)
		}
	}
	if n := slices.Index(appB.rec.messages(), "hello from app A"); n < 0 || slices.Index(appB.rec.messages()[n+1:], "hello from app A") >= 0 {
		t.Errorf("B got the retried message twice: %v", appB.rec.messages())
	}

	// B goes offline; A's user writes three messages; B comes back and
	// gets exactly those, after its last acknowledgement.
	appB.stop()
	var missed []string
	for i := range 3 {
		body := fmt.Sprintf("while B was away %d", i)
		if _, err := appA.SendText(ctx, alice, room, fmt.Sprintf("away-%d", i), body); err != nil {
			t.Fatal(err)
		}
		missed = append(missed, body)
	}
	appB2 := startApp(t, h.URL, tokB)
	if _, err := appA.SendText(ctx, alice, room, "marker", "marker"); err != nil {
		t.Fatal(err)
	}
	appB2.rec.waitMessage(t, "marker")
	if got, want := appB2.rec.messages(), append(slices.Clone(missed), "marker"); !slices.Equal(got, want) {
		t.Fatalf("after reconnecting B got %q, want exactly %q", got, want)
	}

	// App B binds alice too (she uses both apps): both bridges get her
	// events, and a send from B as alice is alice.
	if _, err := appB2.Bind(ctx, alice); err != nil {
		t.Fatal(err)
	}
	fromB, err := appB2.SendText(ctx, alice, room, "b-1", "alice writing from app B")
	if err != nil {
		t.Fatal(err)
	}
	evA := appA.rec.waitMessage(t, "alice writing from app B")
	if evA.ID != fromB || evA.Sender != sdk.UserID(h.UserID("alice")) {
		t.Fatalf("A got %+v", evA)
	}
	if _, err := appA.SendText(ctx, alice, room, "a-2", "alice writing from app A"); err != nil {
		t.Fatal(err)
	}
	evB := appB2.rec.waitMessage(t, "alice writing from app B")
	if !slices.Contains(evB.Users, sdk.UserID(h.UserID("alice"))) {
		t.Errorf("B's event does not name alice among its users: %v", evB.Users)
	}
	appB2.rec.waitMessage(t, "alice writing from app A")

	// A bridge acts only for its bound users.
	_, err = appA.SendText(ctx, bob, room, "x", "impersonation")
	if !errors.Is(err, sdk.ErrNotBound) {
		t.Fatalf("send as an unbound user: %v, want EIMIS_NOT_BOUND", err)
	}
}

// TestBridgeUserRevoked: a bound practitioner struck off the directory
// is removed by the trust keeper; the bridge is told and loses the
// binding.
func TestBridgeUserRevoked(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{Configure: insecureBinds})
	ctx := ctxT(t)
	tokA, _ := addBridges(t, h)
	app := startApp(t, h.URL, tokA)
	dave := hubtest.Localpart("dave")
	if _, err := app.Bind(ctx, dave); err != nil {
		t.Fatal(err)
	}
	room, err := app.CreateRoom(ctx, sdk.CreateRoom{As: dave, Name: "Night shift"})
	if err != nil {
		t.Fatal(err)
	}
	h.ImportDirectory(t, hubtest.Without(hubtest.People(), "dave"))
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	app.rec.waitFor(t, "dave's leave", func(evs []*sdk.Event) bool {
		for _, ev := range evs {
			if m, ok := ev.Membership(); ok && ev.RoomID == room && m.Membership == "leave" {
				return true
			}
		}
		return false
	})
	hubtest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		app.rec.mu.Lock()
		defer app.rec.mu.Unlock()
		if len(app.rec.revoked) != 1 || app.rec.revoked[0].IDNat != dave || app.rec.revoked[0].Code != "EIMIS_INACTIVE_PRACTITIONER" {
			return fmt.Errorf("revocations: %+v", app.rec.revoked)
		}
		return nil
	})
	if users, err := h.Store.BridgeUsers(ctx, "acme-app"); err != nil || len(users) != 0 {
		t.Fatalf("bindings after revocation: %v, %v", users, err)
	}
	if _, err := app.SendText(ctx, dave, room, "x", "still here?"); !errors.Is(err, sdk.ErrNotBound) {
		t.Fatalf("send as a revoked user: %v", err)
	}
	if _, err := app.Bind(ctx, dave); !errors.Is(err, sdk.ErrInactivePractitioner) {
		t.Fatalf("bind of a revoked user: %v", err)
	}
}

// testLog shows the SDK's connection log with EIMIS_TEST_LOG set.
func testLog() *slog.Logger {
	if os.Getenv("EIMIS_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}
