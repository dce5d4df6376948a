package hub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// syncUntil long-polls until pred holds for the accumulated timeline
// events, and returns the next since token.
func syncUntil(t *testing.T, cli *mautrix.Client, since string, pred func(evs []*event.Event) bool) (string, []*event.Event) {
	t.Helper()
	ctx := ctxT(t)
	var seen []*event.Event
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := cli.SyncRequest(ctx, 5000, since, "", false, "")
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		since = resp.NextBatch
		for roomID, r := range resp.Rooms.Join {
			for _, e := range r.Timeline.Events {
				e.RoomID = roomID
				seen = append(seen, e)
			}
		}
		if pred(seen) {
			return since, seen
		}
	}
	t.Fatalf("sync condition not met; saw %d events", len(seen))
	return "", nil
}

func hasBody(body string) func([]*event.Event) bool {
	return func(evs []*event.Event) bool {
		for _, e := range evs {
			if e.Type == event.EventMessage && e.Content.Raw["body"] == body {
				return true
			}
		}
		return false
	}
}

func respErr(err error) string {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.RespError != nil {
		return he.RespError.ErrCode
	}
	return fmt.Sprintf("not a Matrix error: %v", err)
}

// TestChat drives an everyday conversation through the public API with a
// real Matrix client, on both databases.
func TestChat(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			h := hubtest.Start(t, hubtest.Options{Dialect: dialect})
			alice := h.NewUser(t, "alice")
			bob := h.NewUser(t, "bob")
			carol := h.NewUser(t, "carol")
			ctx := ctxT(t)

			who, err := alice.Whoami(ctx)
			if err != nil || who.UserID != h.UserID("alice") {
				t.Fatalf("whoami = %+v, %v", who, err)
			}
			// Finding each other: Element's "start chat" searches the user directory.
			found, err := alice.SearchUserDirectory(ctx, "BO", 5)
			if err != nil || len(found.Results) != 1 || found.Results[0].UserID != bob.UserID || found.Limited {
				t.Fatalf("user directory search = %+v, %v", found, err)
			}

			// Bob's initial sync before anything happens.
			bobSince, _ := syncUntil(t, bob, "", func([]*event.Event) bool { return true })

			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
				Name: "Staff room", Topic: "Coordination", Invite: []id.UserID{bob.UserID}, Preset: "private_chat",
			})
			if err != nil {
				t.Fatalf("createRoom: %v", err)
			}

			// Bob sees the invite in an incremental sync, then joins.
			ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
			for {
				resp, err := bob.SyncRequest(ictx, 5000, bobSince, "", false, "")
				if err != nil {
					t.Fatalf("bob sync: %v", err)
				}
				bobSince = resp.NextBatch
				if _, ok := resp.Rooms.Invite[room.RoomID]; ok {
					break
				}
			}
			cancel()
			if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatalf("join: %v", err)
			}

			// Carol was not invited: joining is forbidden.
			if _, err := carol.JoinRoomByID(ctx, room.RoomID); respErr(err) != "M_FORBIDDEN" {
				t.Fatalf("uninvited join: want M_FORBIDDEN, got %v", err)
			}
			// Carol cannot send either.
			if _, err := carol.SendText(ctx, room.RoomID, "intrusion"); respErr(err) != "M_FORBIDDEN" {
				t.Fatalf("send by non-member: want M_FORBIDDEN, got %v", err)
			}

			// Idempotent send: the same txnId twice gives one event.
			r1, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
				map[string]any{"msgtype": "m.text", "body": "hello bob"}, mautrix.ReqSendEvent{TransactionID: "txn-1"})
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			r2, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
				map[string]any{"msgtype": "m.text", "body": "hello bob"}, mautrix.ReqSendEvent{TransactionID: "txn-1"})
			if err != nil || r2.EventID != r1.EventID {
				t.Fatalf("retried send: %v, %s != %s", err, r2.EventID, r1.EventID)
			}
			bobSince, evs := syncUntil(t, bob, bobSince, hasBody("hello bob"))
			count := 0
			for _, e := range evs {
				if e.ID == r1.EventID {
					count++
				}
			}
			if count != 1 {
				t.Fatalf("event delivered %d times", count)
			}

			// Bob answers; Alice reads it through /messages.
			if _, err := bob.SendText(ctx, room.RoomID, "hi alice"); err != nil {
				t.Fatalf("bob send: %v", err)
			}
			msgs, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 2)
			if err != nil {
				t.Fatalf("messages: %v", err)
			}
			if len(msgs.Chunk) != 2 || msgs.Chunk[0].Content.Raw["body"] != "hi alice" || msgs.End == "" {
				t.Fatalf("messages chunk = %d events, end %q", len(msgs.Chunk), msgs.End)
			}
			older, err := alice.Messages(ctx, room.RoomID, msgs.End, "", mautrix.DirectionBackward, nil, 100)
			if err != nil {
				t.Fatalf("messages page 2: %v", err)
			}
			if len(older.Chunk) == 0 || older.Chunk[len(older.Chunk)-1].Type != event.StateCreate {
				t.Fatalf("paging back did not reach the create event")
			}

			// State: name set at creation, then changed.
			var name event.RoomNameEventContent
			if err := bob.StateEvent(ctx, room.RoomID, event.StateRoomName, "", &name); err != nil || name.Name != "Staff room" {
				t.Fatalf("name = %q, %v", name.Name, err)
			}
			topic, err := alice.SendStateEvent(ctx, room.RoomID, event.StateTopic, "", map[string]any{"topic": "new"})
			if err != nil {
				t.Fatalf("set topic: %v", err)
			}
			// Clients render the change from unsigned.prev_content.
			if ev, err := bob.GetEvent(ctx, room.RoomID, topic.EventID); err != nil || ev.Unsigned.PrevContent == nil ||
				ev.Unsigned.PrevContent.Raw["topic"] != "Coordination" || ev.Unsigned.ReplacesState == "" {
				t.Fatalf("topic change unsigned = %+v, %v", ev.Unsigned, err)
			}
			// Bob (power 0) cannot rename the room (state_default 50).
			if _, err := bob.SendStateEvent(ctx, room.RoomID, event.StateRoomName, "", map[string]any{"name": "x"}); respErr(err) != "M_FORBIDDEN" {
				t.Fatalf("rename by PL0: want M_FORBIDDEN, got %v", err)
			}
			members, err := alice.JoinedMembers(ctx, room.RoomID)
			if err != nil || len(members.Joined) != 2 {
				t.Fatalf("joined members = %v, %v", members, err)
			}

			// Typing and receipts reach the other side as ephemeral events.
			if _, err := alice.UserTyping(ctx, room.RoomID, true, 10*time.Second); err != nil {
				t.Fatalf("typing: %v", err)
			}
			if err := alice.SendReceipt(ctx, room.RoomID, r1.EventID, event.ReceiptTypeRead, nil); err != nil {
				t.Fatalf("receipt: %v", err)
			}
			gotTyping, gotReceipt := false, false
			for i := 0; i < 10 && !(gotTyping && gotReceipt); i++ {
				resp, err := bob.SyncRequest(ctx, 3000, bobSince, "", false, "")
				if err != nil {
					t.Fatalf("sync: %v", err)
				}
				bobSince = resp.NextBatch
				if jr := resp.Rooms.Join[room.RoomID]; jr != nil {
					for _, e := range jr.Ephemeral.Events {
						switch e.Type.Type {
						case "m.typing":
							if ids, _ := e.Content.Raw["user_ids"].([]any); len(ids) == 1 && ids[0] == string(alice.UserID) {
								gotTyping = true
							}
						case "m.receipt":
							gotReceipt = strings.Contains(fmt.Sprint(e.Content.Raw), string(alice.UserID))
						}
					}
				}
			}
			if !gotTyping || !gotReceipt {
				t.Fatalf("ephemeral: typing %v receipt %v", gotTyping, gotReceipt)
			}

			// Bob leaves; the room moves to his leave section.
			if _, err := bob.LeaveRoom(ctx, room.RoomID); err != nil {
				t.Fatalf("leave: %v", err)
			}
			resp, err := bob.SyncRequest(ctx, 0, bobSince, "", false, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := resp.Rooms.Leave[room.RoomID]; !ok {
				t.Fatalf("left room not in leave section")
			}
			// After leaving, Bob cannot send.
			if _, err := bob.SendText(ctx, room.RoomID, "still here?"); respErr(err) != "M_FORBIDDEN" {
				t.Fatalf("send after leave: want M_FORBIDDEN, got %v", err)
			}
		})
	}
}

// TestMatrixErrors checks the error codes of bad input.
func TestMatrixErrors(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	alice := h.NewUser(t, "alice")
	ctx := ctxT(t)
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, method, h.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e mautrix.RespError
		_ = jsonDecode(resp, &e)
		return resp.StatusCode, e.ErrCode
	}
	sendPath := "/_matrix/client/v3/rooms/" + string(room.RoomID) + "/send/m.room.message/"
	big := `{"msgtype":"m.text","body":"` + strings.Repeat("x", 70000) + `"}`
	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"not json", "PUT", sendPath + "a", alice.AccessToken, "{nope", 400, "M_NOT_JSON"},
		{"bad json", "POST", "/_matrix/client/v3/createRoom", alice.AccessToken, `{"invite": 5}`, 400, "M_BAD_JSON"},
		{"array body", "PUT", sendPath + "b", alice.AccessToken, `[1]`, 400, "M_BAD_JSON"},
		{"unknown token", "GET", "/_matrix/client/v3/account/whoami", "nope", "", 401, "M_UNKNOWN_TOKEN"},
		{"missing token", "GET", "/_matrix/client/v3/account/whoami", "", "", 401, "M_MISSING_TOKEN"},
		{"too large", "PUT", sendPath + "c", alice.AccessToken, big, 413, "M_TOO_LARGE"},
		{"unknown endpoint", "GET", "/_matrix/client/v3/no/such/thing", alice.AccessToken, "", 404, "M_UNRECOGNIZED"},
		{"registration off", "POST", "/_matrix/client/v3/register", "", `{"username":"x","password":"y"}`, 403, "M_FORBIDDEN"},
		{"bad login", "POST", "/_matrix/client/v3/login", "", `{"type":"m.login.password","user":"alice","password":"wrong"}`, 403, "M_FORBIDDEN"},
		{"unknown room", "PUT", "/_matrix/client/v3/rooms/!nope:hub.test/send/m.room.message/d", alice.AccessToken, `{}`, 404, "M_NOT_FOUND"},
		{"bad since", "GET", "/_matrix/client/v3/sync?since=garbage", alice.AccessToken, "", 400, "M_INVALID_PARAM"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, code := do(c.method, c.path, c.token, c.body)
			if status != c.status || code != c.code {
				t.Fatalf("got %d %s, want %d %s", status, code, c.status, c.code)
			}
		})
	}
}

// TestRoomVersions creates a room of every supported version and chats.
func TestRoomVersions(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	ctx := ctxT(t)
	for _, v := range []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12} {
		t.Run(string(v), func(t *testing.T) {
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: v, Invite: []id.UserID{bob.UserID}})
			if err != nil {
				t.Fatalf("create v%s: %v", v, err)
			}
			if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatalf("join: %v", err)
			}
			if _, err := bob.SendText(ctx, room.RoomID, "v"+string(v)); err != nil {
				t.Fatalf("send: %v", err)
			}
			var create event.CreateEventContent
			if err := bob.StateEvent(ctx, room.RoomID, event.StateCreate, "", &create); err != nil || create.RoomVersion != v {
				t.Fatalf("create event version = %q, %v", create.RoomVersion, err)
			}
			// Power levels still work: bob (PL 0) cannot change them.
			if _, err := bob.SendStateEvent(ctx, room.RoomID, event.StatePowerLevels, "", map[string]any{"users": map[string]int{string(bob.UserID): 100}}); respErr(err) != "M_FORBIDDEN" {
				t.Fatalf("PL escalation: want M_FORBIDDEN, got %v", err)
			}
		})
	}
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: "9"}); respErr(err) != "M_UNSUPPORTED_ROOM_VERSION" {
		t.Fatalf("v9: want M_UNSUPPORTED_ROOM_VERSION, got %v", err)
	}
}

// TestRedaction: a removed message stays removed for everyone, after any
// reload, and only its sender or a moderator may remove it.
func TestRedaction(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			h := hubtest.Start(t, hubtest.Options{Dialect: dialect})
			alice := h.NewUser(t, "alice")
			bob := h.NewUser(t, "bob")
			ctx := ctxT(t)
			room, _ := sharedRoom(t, alice, bob)
			wrong, err := alice.SendText(ctx, room.RoomID, "patient details sent to the wrong room")
			if err != nil {
				t.Fatal(err)
			}
			bobs, err := bob.SendText(ctx, room.RoomID, "bob's message")
			if err != nil {
				t.Fatal(err)
			}
			// Bob (power 0, redact needs 50) cannot remove Alice's message.
			if _, err := bob.RedactEvent(ctx, room.RoomID, wrong.EventID); respErr(err) != "M_FORBIDDEN" {
				t.Fatalf("redact someone else's message: want M_FORBIDDEN, got %v", err)
			}
			if _, err := alice.RedactEvent(ctx, room.RoomID, wrong.EventID, mautrix.ReqRedact{Reason: "wrong room"}); err != nil {
				t.Fatalf("redact own message: %v", err)
			}
			// A moderator (Alice, power 100) may remove Bob's.
			if _, err := alice.RedactEvent(ctx, room.RoomID, bobs.EventID); err != nil {
				t.Fatalf("moderator redaction: %v", err)
			}
			for _, cli := range []*mautrix.Client{alice, bob} {
				ev, err := cli.GetEvent(ctx, room.RoomID, wrong.EventID)
				if err != nil {
					t.Fatal(err)
				}
				if len(ev.Content.Raw) != 0 || ev.Unsigned.RedactedBecause == nil {
					t.Fatalf("%s sees content %v, redacted_because %v", cli.UserID, ev.Content.Raw, ev.Unsigned.RedactedBecause)
				}
				// A fresh initial sync (a reloaded client) never sees the text.
				resp, err := cli.SyncRequest(ctx, 0, "", "", false, "")
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range resp.Rooms.Join[room.RoomID].Timeline.Events {
					if e.ID == wrong.EventID && len(e.Content.Raw) != 0 {
						t.Fatalf("initial sync of %s still has the redacted content", cli.UserID)
					}
				}
			}
			if _, err := bob.RedactEvent(ctx, room.RoomID, "$nonexistent"); respErr(err) != "M_NOT_FOUND" {
				t.Fatalf("redact unknown event: got %v", err)
			}
		})
	}
}

// TestObservability: health and readiness answer, and the metrics show
// requests by route pattern (never raw paths), accepted events and NATS
// publishes.
func TestObservability(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	alice := h.NewUser(t, "alice")
	ctx := ctxT(t)
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "hello"); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := get("/_eimis/health"); code != 200 {
		t.Fatalf("health: %d", code)
	}
	if code, body := get("/_eimis/ready"); code != 200 || !strings.Contains(body, `"nats":"ok"`) || !strings.Contains(body, `"store":"ok"`) {
		t.Fatalf("ready: %d %s", code, body)
	}
	hubtest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, body := get("/metrics")
		for _, want := range []string{
			`route="PUT /_matrix/client/v3/rooms/{roomId}/send/{type}/{txnId}"`,
			`eimis_events_accepted_total{`,
			`eimis_nats_publish_duration_seconds_count`,
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("metrics lack %s", want)
			}
		}
		if strings.Contains(body, string(room.RoomID)) {
			return fmt.Errorf("metrics contain a raw room ID")
		}
		return nil
	})
}
