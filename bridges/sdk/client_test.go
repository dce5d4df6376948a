package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/eimis-hub/eimis/bridges/sdk"
)

func run(t *testing.T, cfg sdk.Config) (*sdk.Client, func() error) {
	t.Helper()
	c, err := sdk.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return c, stop
}

func TestNewChecksConfig(t *testing.T) {
	for _, cfg := range []sdk.Config{
		{URL: "https://hub.example.org"},
		{URL: "hub.example.org", Token: "t"},
		{URL: "ftp://hub.example.org", Token: "t"},
	} {
		if _, err := sdk.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestReconnectAndResume: Run reconnects by itself; a request cut by the
// disconnection is sent again on the new connection, except those that
// would do their work twice (CreateRoom: ErrDisconnected).
func TestReconnectAndResume(t *testing.T) {
	hub := startFakeHub()
	defer hub.Close()
	var mu sync.Mutex
	var connects int
	swallowed := map[string]bool{}
	hub.onFrame = func(c *websocket.Conn, f map[string]any) bool {
		// Leave the first bind and create_room unanswered: the
		// connection drops before the answer.
		typ := f["type"].(string)
		if (typ == "bind" || typ == "create_room") && !swallowed[typ] {
			swallowed[typ] = true
			return true
		}
		return false
	}
	c, stop := run(t, sdk.Config{URL: hub.URL, Token: fakeToken, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnConnect: func(context.Context, sdk.Welcome) {
			mu.Lock()
			connects++
			mu.Unlock()
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	type res struct {
		what string
		err  error
	}
	results := make(chan res, 2)
	go func() {
		_, err := c.Bind(ctx, "810000000033")
		results <- res{"bind", err}
	}()
	go func() {
		_, err := c.CreateRoom(ctx, sdk.CreateRoom{As: "810000000033"})
		results <- res{"create_room", err}
	}()
	time.Sleep(100 * time.Millisecond)
	hub.dropAll()
	for range 2 {
		r := <-results
		switch {
		case r.what == "bind" && r.err != nil:
			t.Errorf("bind cut by a disconnection was not sent again: %v", r.err)
		case r.what == "create_room" && !errors.Is(r.err, sdk.ErrDisconnected):
			t.Errorf("create_room cut by a disconnection: %v, want ErrDisconnected", r.err)
		}
	}
	mu.Lock()
	n := connects
	mu.Unlock()
	if n < 2 {
		t.Errorf("OnConnect ran %d times", n)
	}
	if err := stop(); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

// TestEventsAcknowledgedAfterHandler: the SDK acknowledges an event only
// once the handler returned nil; an error drops the connection instead.
func TestEventsAcknowledgedAfterHandler(t *testing.T) {
	hub := startFakeHub()
	defer hub.Close()
	var mu sync.Mutex
	fail := true
	var seen []string
	c, _ := run(t, sdk.Config{URL: hub.URL, Token: fakeToken, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		OnEvent: func(_ context.Context, ev *sdk.Event) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, ev.Cursor)
			if fail {
				fail = false
				return errors.New("database down")
			}
			return nil
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.SendText(ctx, "810000000017", "!r:hub.example", "t1", "one"); err != nil {
		t.Fatal(err)
	}
	// The first delivery failed (not acked, connection dropped); the
	// fake hub does not redeliver, so a later event is acked normally. A
	// send may still land on the dropping connection, whose event is then
	// lost with it: keep sending until one is acknowledged.
	deadline := time.Now().Add(30 * time.Second)
	for i := 2; ; i++ {
		_, _ = c.SendText(ctx, "810000000017", "!r:hub.example", fmt.Sprintf("t%d", i), "again")
		hub.mu.Lock()
		acked := strings.Join(hub.acked, ",")
		hub.mu.Unlock()
		if strings.Contains(","+acked+",", ",1,") {
			t.Fatalf("acked %q: the event whose handler failed was acknowledged", acked)
		}
		if acked != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing acknowledged")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFatalRefusal: a bad token ends Run with the hub's error.
func TestFatalRefusal(t *testing.T) {
	hub := startFakeHub()
	defer hub.Close()
	c, err := sdk.New(sdk.Config{URL: hub.URL, Token: "wrong", MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Run(ctx)
	if !errors.Is(err, sdk.ErrBadToken) || !sdk.Fatal(err) {
		t.Fatalf("Run with a bad token = %v", err)
	}

	// A suspended operator is retried, not fatal.
	hub.refuse = "EIMIS_OPERATOR_SUSPENDED"
	c, err = sdk.New(sdk.Config{URL: hub.URL, Token: fakeToken, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	if err := c.Run(sctx); err != nil {
		t.Fatalf("Run with a suspended operator returned %v; it should keep retrying", err)
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if hub.hellos < 3 {
		t.Errorf("only %d attempts while suspended", hub.hellos)
	}
}

func TestEventDecoding(t *testing.T) {
	sk := "@810000000025:hub"
	for _, tc := range []struct {
		ev   sdk.Event
		want string
	}{
		{sdk.Event{Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"ok","format":"org.matrix.custom.html","formatted_body":"<b>ok</b>","m.relates_to":{"m.in_reply_to":{"event_id":"$a"}}}`)},
			"m.text|ok|<b>ok</b>|$a|"},
		{sdk.Event{Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"* fixed","m.new_content":{"msgtype":"m.text","body":"fixed"},"m.relates_to":{"rel_type":"m.replace","event_id":"$b"}}`)},
			"m.text|fixed||$b"},
	} {
		m, ok := tc.ev.Message()
		if !ok {
			t.Fatalf("not a message: %+v", tc.ev)
		}
		got := string(m.Type) + "|" + m.Body + "|" + m.HTML + "|"
		if m.Replaces != "" {
			got += string(m.Replaces)
		} else {
			got += string(m.ReplyTo) + "|"
		}
		if got != tc.want {
			t.Errorf("decoded %q, want %q", got, tc.want)
		}
	}
	mem := sdk.Event{Type: "m.room.member", StateKey: &sk, Content: json.RawMessage(`{"membership":"invite","is_direct":true}`)}
	if m, ok := mem.Membership(); !ok || m.User.IDNat() != "810000000025" || m.Membership != "invite" || !m.IsDirect {
		t.Errorf("membership = %+v", m)
	}
	if _, ok := mem.Message(); ok {
		t.Error("a member event decoded as a message")
	}
}

// TestNoInternalImports holds the SDK to its promise: vendors import it
// without the hub's internals.
func TestNoInternalImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v %s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "/internal/") && strings.HasPrefix(p, "github.com/eimis-hub/eimis/") {
			t.Errorf("the SDK depends on %s", p)
		}
	}
}
