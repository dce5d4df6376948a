package hub_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// TestAppserviceEphemeral: a Matrix client's typing notification and read
// receipt reach, as m.typing and m.receipt with their room_id, under both
// ephemeral and de.sorunome.msc2409.ephemeral, an appservice registered
// with receive_ephemeral that has a user in the room, and not one
// registered without it.
func TestAppserviceEphemeral(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) { testAppserviceEphemeral(t, hubtest.Options{Dialect: dialect}) })
	}
}

func testAppserviceEphemeral(t *testing.T, opts hubtest.Options) {
	h := hubtest.Start(t, opts)
	ctx := t.Context()

	withEph := newFakeAS(0)
	defer withEph.Close()
	without := newFakeAS(0)
	defer without.Close()
	file, ephToken, _ := fakeRegistration(withEph.URL)
	addAppservice(t, file+"receive_ephemeral: true\n", h)
	plainToken := strings.Repeat("p", 48)
	addAppservice(t, fmt.Sprintf(`id: plain
url: %s
as_token: %s
hs_token: %s
sender_localpart: plainbot
namespaces:
  users:
    - exclusive: true
      regex: '^@plain_.*:hub\.test$'
`, without.URL, plainToken, strings.Repeat("q", 48)), h)

	approve(t, "fake", "bob", h)
	approve(t, "plain", "bob", h)
	alice := h.NewUser(t, "alice")
	var puppets []id.UserID
	for _, c := range []struct {
		as     asClient
		prefix string
	}{{asClient{url: h.URL, token: ephToken}, "fake_"}, {asClient{url: h.URL, token: plainToken}, "plain_"}} {
		lp := c.prefix + hubtest.Localpart("bob")
		if st, body := c.as.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"type": "m.login.application_service", "username": lp}); st != 200 {
			t.Fatalf("register %s: %d %v", lp, st, body)
		}
		puppets = append(puppets, id.NewUserID(lp, h.Config.ServerName))
	}
	resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: puppets})
	if err != nil {
		t.Fatal(err)
	}
	room := resp.RoomID
	for i, tok := range []string{ephToken, plainToken} {
		if st, body := (asClient{url: h.URL, token: tok}).do(t, "POST", "/_matrix/client/v3/join/"+string(room), string(puppets[i]), map[string]any{}); st != 200 {
			t.Fatalf("%s joins: %d %v", puppets[i], st, body)
		}
	}
	sent, err := alice.SendText(ctx, room, "hello")
	if err != nil {
		t.Fatal(err)
	}
	// Both appservices know their puppets are in the room.
	withEph.waitMessages(t, "hello")
	without.waitMessages(t, "hello")

	if _, err := alice.UserTyping(ctx, room, true, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := alice.SendReceipt(ctx, room, sent.EventID, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}

	type ephEvent struct {
		Type    string          `json:"type"`
		RoomID  id.RoomID       `json:"room_id"`
		Content json.RawMessage `json:"content"`
	}
	// found checks that evs hold alice typing and her read receipt of sent.
	found := func(evs []json.RawMessage) error {
		typing, receipt := false, false
		for _, raw := range evs {
			var ev ephEvent
			if err := json.Unmarshal(raw, &ev); err != nil || ev.RoomID != room {
				continue
			}
			switch ev.Type {
			case "m.typing":
				var c struct {
					UserIDs []id.UserID `json:"user_ids"`
				}
				_ = json.Unmarshal(ev.Content, &c)
				typing = typing || slices.Contains(c.UserIDs, alice.UserID)
			case "m.receipt":
				var c map[id.EventID]map[string]map[id.UserID]struct {
					TS int64 `json:"ts"`
				}
				_ = json.Unmarshal(ev.Content, &c)
				r, ok := c[sent.EventID]["m.read"][alice.UserID]
				receipt = receipt || ok && r.TS > 0
			}
		}
		if !typing || !receipt {
			return fmt.Errorf("typing %v, receipt %v in %s", typing, receipt, evs)
		}
		return nil
	}
	hubtest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		withEph.mu.Lock()
		defer withEph.mu.Unlock()
		if err := found(withEph.ephemeral); err != nil {
			return fmt.Errorf("ephemeral: %w", err)
		}
		if err := found(withEph.unstable); err != nil {
			return fmt.Errorf("de.sorunome.msc2409.ephemeral: %w", err)
		}
		return nil
	})

	// Once a later event reached the other appservice, it has still had
	// no ephemeral event.
	if _, err := alice.SendText(ctx, room, "after"); err != nil {
		t.Fatal(err)
	}
	without.waitMessages(t, "after")
	without.mu.Lock()
	defer without.mu.Unlock()
	if len(without.ephemeral) != 0 || len(without.unstable) != 0 {
		t.Fatalf("appservice without receive_ephemeral got %s / %s", without.ephemeral, without.unstable)
	}
	for _, a := range without.tries {
		if strings.Contains(a.body, "ephemeral") {
			t.Fatalf("appservice without receive_ephemeral got transaction %s", a.body)
		}
	}
}
