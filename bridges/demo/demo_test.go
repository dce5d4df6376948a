package demo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/eimis-hub/eimis/bridges/demo"
	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// running is a demo app on an HTTP test server.
type running struct {
	app *demo.App
	url string
}

// world is a hub with two demo apps: app A (operator acme, alice) and app
// B (operator globex, bob).
type world struct {
	hub  *hubtest.Hub
	a, b running
}

func startWorld(t *testing.T) *world {
	t.Helper()
	// As scripts/demo.sh runs it: the apps bind without consent.
	h := hubtest.Start(t, hubtest.Options{Configure: func(c *config.Config) { c.BridgeBindWithoutConsentInsecure = true }})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := &world{hub: h}
	for i, spec := range []struct{ op, name, user string }{{"acme", "App A", "alice"}, {"globex", "App B", "bob"}} {
		if _, err := h.Operators.Add(ctx, operators.Operator{ID: spec.op, Name: spec.op, ServerNames: []string{spec.op + ".example"},
			Contact: "security@" + spec.op + ".example"}, "test"); err != nil {
			t.Fatal(err)
		}
		tok, _, err := gateway.AddBridge(ctx, h.Store, spec.op+"-demo", spec.op)
		if err != nil {
			t.Fatal(err)
		}
		app, err := demo.New(demo.Config{Name: spec.name, HubURL: h.URL, Token: tok, Users: []string{hubtest.Localpart(spec.user)}})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = app.Run(ctx) }()
		srv := httptest.NewServer(app.Handler())
		t.Cleanup(srv.Close)
		select {
		case <-app.Ready():
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not bind its users", spec.name)
		}
		r := running{app: app, url: srv.URL}
		if i == 0 {
			w.a = r
		} else {
			w.b = r
		}
	}
	return w
}

func post(t *testing.T, url string, body any, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var e map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("POST %s: %d %v", url, resp.StatusCode, e)
	}
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
}

type roomsResp struct {
	Rooms []struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Messages []struct {
			Name     string `json:"name"`
			Body     string `json:"body"`
			External bool   `json:"external"`
		} `json:"messages"`
	} `json:"rooms"`
}

// waitFor polls an app's room list for a user until pred holds.
func waitFor(t *testing.T, appURL, as string, pred func(roomsResp) bool) {
	t.Helper()
	var last roomsResp
	hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(appURL + "/api/rooms?as=" + url.QueryEscape(as))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		last = roomsResp{}
		if err := json.NewDecoder(resp.Body).Decode(&last); err != nil {
			return err
		}
		if pred(last) {
			return nil
		}
		return fmt.Errorf("not yet: %+v", last)
	})
}

// waitBody polls an app's room list until a message with body shows.
func waitBody(t *testing.T, appURL, as, body string) (sender string, external bool) {
	t.Helper()
	waitFor(t, appURL, as, func(r roomsResp) bool {
		for _, room := range r.Rooms {
			for _, m := range room.Messages {
				if m.Body == body {
					sender, external = m.Name, m.External
					return true
				}
			}
		}
		return false
	})
	return sender, external
}

// TestDemoEndToEnd: a message typed in app A reaches app B and a Matrix
// client, and the Matrix client's answer reaches both apps.
func TestDemoEndToEnd(t *testing.T) {
	w := startWorld(t)
	ctx := context.Background()
	carol := w.hub.NewUser(t, "carol")
	alice, bob := string(w.hub.UserID("alice")), string(w.hub.UserID("bob"))

	// Alice finds Bob in the directory from her app, then opens a room.
	var found struct {
		Results []struct {
			IDNat       string `json:"idnat"`
			DisplayName string `json:"display_name"`
		} `json:"results"`
	}
	resp, err := http.Get(w.a.url + "/api/search?q=bob")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&found)
	resp.Body.Close()
	if len(found.Results) == 0 || found.Results[0].IDNat != hubtest.Localpart("bob") {
		t.Fatalf("directory search from the app = %+v", found)
	}
	var created struct {
		RoomID string `json:"room_id"`
	}
	post(t, w.a.url+"/api/rooms", map[string]any{"as": alice, "name": "Lit 4", "invite": []string{found.Results[0].IDNat, string(carol.UserID)}}, &created)
	if _, err := carol.JoinRoomByID(ctx, mautrixRoom(created.RoomID)); err != nil {
		t.Fatal(err)
	}
	post(t, w.a.url+"/api/send", map[string]any{"as": alice, "room": created.RoomID, "text": "Bonjour depuis l'app A"}, nil)

	// App B learns the names of those who were there before its user
	// joined just after the join, so the sender's name may come a moment
	// after the message.
	waitFor(t, w.b.url, bob, func(r roomsResp) bool {
		for _, room := range r.Rooms {
			for _, m := range room.Messages {
				if m.Body == "Bonjour depuis l'app A" && m.External && m.Name == "Alice Test - Médecin" {
					return true
				}
			}
		}
		return false
	})
	if _, ext := waitBody(t, w.a.url, alice, "Bonjour depuis l'app A"); ext {
		t.Fatal("app A shows its own user's message as external")
	}
	var since string
	hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		s, err := carol.SyncRequest(ctx, 1000, since, "", false, "")
		if err != nil {
			return err
		}
		since = s.NextBatch
		for _, r := range s.Rooms.Join {
			for _, e := range r.Timeline.Events {
				if e.Type == event.EventMessage && e.Content.Raw["body"] == "Bonjour depuis l'app A" {
					return nil
				}
			}
		}
		return errors.New("not in the Matrix client yet")
	})
	if _, err := carol.SendText(ctx, mautrixRoom(created.RoomID), "Reçu, depuis Element"); err != nil {
		t.Fatal(err)
	}
	waitBody(t, w.a.url, alice, "Reçu, depuis Element")
	waitBody(t, w.b.url, bob, "Reçu, depuis Element")
	// And app B answers.
	post(t, w.b.url+"/api/send", map[string]any{"as": bob, "room": created.RoomID, "text": "Et depuis l'app B"}, nil)
	waitBody(t, w.a.url, alice, "Et depuis l'app B")
}
