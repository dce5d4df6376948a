package hub_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// rawDo sends a raw body (bytes a Matrix library would not send) with an
// access token and returns the status and the decoded answer.
func rawDo(t *testing.T, method, u, token string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// poisoned is a request a client (careless or hostile) sends: the spec's
// error is the answer, and no other request may suffer from it.
type poisoned struct {
	name, method, path string
	body               string
	status             int
	code               string
}

// poisonedRequests are the bad requests of one room, each carrying mark
// in the keys and values of its content.
func poisonedRequests(room id.RoomID, mark string) []poisoned {
	r := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room))
	deep := strings.Repeat(`[`, 5000) + strings.Repeat(`]`, 5000)
	return []poisoned{
		{"float", "PUT", r + "/send/m.room.message/p-float", `{"msgtype":"m.text","body":"` + mark + `","` + mark + `":1.5}`, 400, "M_BAD_JSON"},
		{"integral float", "PUT", r + "/send/m.room.message/p-one", `{"msgtype":"m.text","body":"` + mark + `","` + mark + `":1.0}`, 400, "M_BAD_JSON"},
		{"exponent", "PUT", r + "/send/m.room.message/p-exp", `{"msgtype":"m.text","body":"` + mark + `","` + mark + `":1e3}`, 400, "M_BAD_JSON"},
		{"integer above 2^53-1", "PUT", r + "/send/m.room.message/p-big", `{"msgtype":"m.text","body":"` + mark + `","` + mark + `":9007199254740992}`, 400, "M_BAD_JSON"},
		{"power level above the largest integer", "PUT", r + "/state/m.room.power_levels", `{"users":{"@` + mark + `:hub.test":9007199254740992}}`, 400, "M_BAD_JSON"},
		{"invalid UTF-8", "PUT", r + "/send/m.room.message/p-utf8", "{\"msgtype\":\"m.text\",\"body\":\"" + mark + "\xff\xfe\"}", 400, "M_NOT_JSON"},
		{"lone surrogate", "PUT", r + "/send/m.room.message/p-surrogate", `{"msgtype":"m.text","body":"` + mark + `\ud800"}`, 400, "M_NOT_JSON"},
		{"5000 deep", "PUT", r + "/send/m.room.message/p-deep", `{"msgtype":"m.text","body":"` + mark + `","` + mark + `":` + deep + `}`, 400, "M_BAD_JSON"},
		{"duplicate member", "PUT", r + "/send/m.room.message/p-dup", `{"msgtype":"m.text","body":"` + mark + `","body":"` + mark + `"}`, 400, "M_BAD_JSON"},
		{"syntax", "PUT", r + "/send/m.room.message/p-syntax", `{"msgtype":"m.text","body":"` + mark + `"`, 400, "M_NOT_JSON"},
		{"NUL in a state key", "PUT", r + "/state/m.room.topic/a%00b", `{"topic":"` + mark + `"}`, 400, "M_BAD_JSON"},
		{"state key too long", "PUT", r + "/state/m.room.topic/" + strings.Repeat("k", 300), `{"topic":"` + mark + `"}`, 400, "M_BAD_JSON"},
		{"invalid UTF-8 in a transaction ID", "PUT", r + "/send/m.room.message/p%FF", `{"msgtype":"m.text","body":"` + mark + `"}`, 400, "M_BAD_JSON"},
		{"float in a redaction", "PUT", r + "/redact/$unknown/p-redact", `{"reason":"` + mark + `","` + mark + `":0.5}`, 400, "M_BAD_JSON"},
		{"redaction of an unknown event", "PUT", r + "/redact/$unknown/p-redact2", `{"reason":"` + mark + `"}`, 404, "M_NOT_FOUND"},
		{"event too large", "PUT", r + "/send/m.room.message/p-large", `{"msgtype":"m.text","body":"` + strings.Repeat(mark, 70000/len(mark)) + `"}`, 413, "M_TOO_LARGE"},
		{"createRoom: power levels", "POST", "/_matrix/client/v3/createRoom", `{"power_level_content_override":{"users_default":9007199254740992,"` + mark + `":1}}`, 400, "M_BAD_JSON"},
		{"createRoom: initial state", "POST", "/_matrix/client/v3/createRoom", `{"initial_state":[{"type":"m.room.topic","state_key":"","content":{"topic":"` + mark + `","` + mark + `":2.5}}]}`, 400, "M_BAD_JSON"},
		{"createRoom: creation content", "POST", "/_matrix/client/v3/createRoom", `{"creation_content":{"` + mark + `":` + deep + `}}`, 400, "M_BAD_JSON"},
	}
}

// TestPoisonedRequestsFailAlone: bad requests sent in the middle of many
// good concurrent sends get the spec's error; every good send succeeds,
// and nothing of the bad ones is stored.
func TestPoisonedRequestsFailAlone(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			h := hubtest.Start(t, hubtest.Options{Dialect: dialect})
			ctx := t.Context()
			alice, bob := h.NewUser(t, "alice"), h.NewUser(t, "bob")
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
			const mark = "POISON-MARK-51c2"
			const perSender = 40
			start := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			var failures []string
			for _, cli := range []*mautrix.Client{alice, bob} {
				for i := range perSender {
					wg.Go(func() {
						<-start
						body := fmt.Sprintf("good %s %d", cli.UserID, i)
						if _, err := cli.SendText(ctx, room.RoomID, body); err != nil {
							mu.Lock()
							failures = append(failures, body+": "+err.Error())
							mu.Unlock()
						}
					})
				}
			}
			for _, p := range poisonedRequests(room.RoomID, mark) {
				wg.Go(func() {
					<-start
					status, body := rawDo(t, p.method, h.URL+p.path, alice.AccessToken, []byte(p.body))
					if status != p.status || body["errcode"] != p.code {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %d %v, want %d %s", p.name, status, body, p.status, p.code))
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if len(failures) > 0 {
				t.Fatalf("%d failures:\n%s", len(failures), strings.Join(failures, "\n"))
			}

			// Every good message is in the room, and nothing poisoned.
			msgs, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 1000)
			if err != nil {
				t.Fatal(err)
			}
			good := 0
			for _, ev := range msgs.Chunk {
				raw, _ := json.Marshal(ev.Content.Raw)
				if strings.Contains(string(raw), mark) {
					t.Fatalf("a poisoned request was stored: %s %s", ev.Type, raw)
				}
				if b, _ := ev.Content.Raw["body"].(string); ev.Type == event.EventMessage && strings.HasPrefix(b, "good ") {
					good++
				}
			}
			if good != 2*perSender {
				t.Fatalf("%d good messages in the room, want %d", good, 2*perSender)
			}
			var pl event.PowerLevelsEventContent
			if err := alice.StateEvent(ctx, room.RoomID, event.StatePowerLevels, "", &pl); err != nil {
				t.Fatal(err)
			}
			if pl.UsersDefault != 0 || len(pl.Users) != 1 {
				t.Fatalf("power levels changed: users_default %d, users %v", pl.UsersDefault, pl.Users)
			}
		})
	}
}

// syncBuffer is a log sink shared by the hub's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// echoAS is an appservice that refuses its first transactions with an
// answer quoting them (as a careless one might), then accepts.
type echoAS struct {
	*httptest.Server
	mu       sync.Mutex
	refuse   int
	accepted []string
}

func newEchoAS(refuse int) *echoAS {
	a := &echoAS{refuse: refuse}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		defer a.mu.Unlock()
		if !strings.HasPrefix(r.URL.Path, "/_matrix/app/v1/transactions/") {
			_, _ = w.Write([]byte("{}"))
			return
		}
		if a.refuse > 0 {
			a.refuse--
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(body) // "could not handle: <the whole transaction>"
			return
		}
		a.accepted = append(a.accepted, string(body))
		_, _ = w.Write([]byte("{}"))
	}))
	return a
}

func (a *echoAS) received(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.accepted {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

// bridgeSocket is a raw Bridge Protocol connection: frames a vendor's
// code might get wrong, which the SDK would never send.
type bridgeSocket struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialBridge(t *testing.T, h *hubtest.Hub, token string) *bridgeSocket {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), "ws"+strings.TrimPrefix(h.URL, "http")+gateway.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	b := &bridgeSocket{t: t, ws: ws}
	b.send([]byte(`{"type":"hello","protocol":1,"token":"` + token + `","client":"canon-test"}`))
	if f := b.next(); f["type"] != "welcome" {
		t.Fatalf("hello answered with %v", f)
	}
	return b
}

func (b *bridgeSocket) send(frame []byte) {
	b.t.Helper()
	if err := b.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bridgeSocket) next() map[string]any {
	b.t.Helper()
	_ = b.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := b.ws.ReadMessage()
	if err != nil {
		b.t.Fatal(err)
	}
	f := map[string]any{}
	if err := json.Unmarshal(data, &f); err != nil {
		b.t.Fatalf("undecodable frame %q", data)
	}
	return f
}

// answer sends a request frame and returns the error frame answering it
// (nil for a result).
func (b *bridgeSocket) answer(id string, frame []byte) map[string]any {
	b.t.Helper()
	b.send(frame)
	for {
		f := b.next()
		if f["id"] != id && f["id"] != nil {
			continue
		}
		switch f["type"] {
		case "error":
			return f
		case "result":
			return nil
		}
	}
}

// TestNoContentInLogs drives every error path we know of with a marker in
// the keys and values of the content, the hub logging at debug level, and
// checks that the marker never reaches the log.
func TestNoContentInLogs(t *testing.T) {
	const mark = "LOGMARK-9e4d-PATIENT"
	logs := &syncBuffer{}
	h := hubtest.Start(t, hubtest.Options{Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := t.Context()
	alice, bob := h.NewUser(t, "alice"), h.NewUser(t, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}

	// The Client-Server API.
	for _, p := range poisonedRequests(room.RoomID, mark) {
		if status, body := rawDo(t, p.method, h.URL+p.path, alice.AccessToken, []byte(p.body)); status != p.status || body["errcode"] != p.code {
			t.Errorf("%s: %d %v, want %d %s", p.name, status, body, p.status, p.code)
		}
	}
	others := []poisoned{
		{"send to an unknown room", "PUT", "/_matrix/client/v3/rooms/!nowhere:hub.test/send/m.room.message/o1", `{"body":"` + mark + `"}`, 404, "M_NOT_FOUND"},
		{"send in a room one is not in", "PUT", "/_matrix/client/v3/rooms/" + string(room.RoomID) + "/send/m.room.message/o2", `{"body":"` + mark + `","` + mark + `":1}`, 403, "M_FORBIDDEN"},
		{"account data too deep", "PUT", "/_matrix/client/v3/user/" + string(bob.UserID) + "/account_data/m.x", `{"` + mark + `":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`, 400, "M_BAD_JSON"},
		{"profile with invalid UTF-8", "PUT", "/_matrix/client/v3/profile/" + string(bob.UserID) + "/displayname", "{\"displayname\":\"" + mark + "\xff\"}", 400, "M_NOT_JSON"},
		{"invite with a bad reason", "POST", "/_matrix/client/v3/rooms/" + string(room.RoomID) + "/invite", `{"user_id":"@nobody:hub.test","reason":"` + mark + `\udfff"}`, 400, "M_NOT_JSON"},
	}
	for _, p := range others {
		if status, body := rawDo(t, p.method, h.URL+p.path, bob.AccessToken, []byte(p.body)); status != p.status || body["errcode"] != p.code {
			t.Errorf("%s: %d %v, want %d %s", p.name, status, body, p.status, p.code)
		}
	}

	// The Bridge Protocol: refused at the frame decoder, and refused
	// further in (the user is not bound: that refusal is logged).
	token, _ := addBridges(t, h)
	br := dialBridge(t, h, token)
	bad := []struct{ name, frame, code string }{
		{"float in info", `{"type":"send","id":"b1","user":"810000000017","room_id":"` + string(room.RoomID) + `","txn_id":"t1","msgtype":"m.image","body":"` + mark + `","url":"mxc://hub.test/x","info":{"` + mark + `":1.5,"size":1.0}}`, "EIMIS_INVALID_FIELD"},
		{"deep info", `{"type":"send","id":"b2","user":"810000000017","room_id":"` + string(room.RoomID) + `","txn_id":"t2","msgtype":"m.file","body":"` + mark + `","url":"mxc://hub.test/x","info":{"` + mark + `":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}`, "EIMIS_INVALID_FIELD"},
		{"lone surrogate", `{"type":"send","id":"b3","user":"810000000017","room_id":"` + string(room.RoomID) + `","txn_id":"t3","msgtype":"m.text","body":"` + mark + `\ud800"}`, "EIMIS_BAD_FRAME"},
		{"duplicate member", `{"type":"send","id":"b4","user":"810000000017","room_id":"` + string(room.RoomID) + `","txn_id":"t4","msgtype":"m.text","body":"` + mark + `","body":"x"}`, "EIMIS_INVALID_FIELD"},
		{"unknown member", `{"type":"send","id":"b5","user":"810000000017","room_id":"` + string(room.RoomID) + `","txn_id":"t5","msgtype":"m.text","body":"x","` + mark + `":"` + mark + `"}`, "EIMIS_INVALID_FIELD"},
		{"unbound user", `{"type":"send","id":"b6","user":"810000000017","room_id":"` + string(room.RoomID) + `","txn_id":"t6","msgtype":"m.text","body":"` + mark + `"}`, "EIMIS_NOT_BOUND"},
	}
	for _, b := range bad {
		var id struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(strings.Replace(b.frame, `\ud800`, ``, 1)), &id)
		f := br.answer(id.ID, []byte(b.frame))
		if f == nil || f["code"] != b.code {
			t.Errorf("bridge %s: %v, want %s", b.name, f, b.code)
		}
	}

	// The Application Service API: a transaction refused with an answer
	// quoting it, then accepted; and a send with bad content.
	as := newEchoAS(2)
	defer as.Close()
	asToken := strings.Repeat("c", 48)
	addAppservice(t, fmt.Sprintf(`id: canon
url: %s
as_token: %s
hs_token: %s
sender_localpart: canonbot
namespaces:
  rooms:
    - exclusive: false
      regex: '.*'
`, as.URL, asToken, strings.Repeat("d", 48)), h)
	if _, err := alice.SendText(ctx, room.RoomID, "pushed "+mark); err != nil {
		t.Fatal(err)
	}
	hubtest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if !as.received("pushed " + mark) {
			return fmt.Errorf("the appservice did not get the message yet")
		}
		return nil
	})
	asc := asClient{url: h.URL, token: asToken}
	if st, body := asc.do(t, "PUT", "/_matrix/client/v3/rooms/"+string(room.RoomID)+"/send/m.room.message/as1", "", map[string]any{"body": mark, mark: 1.5}); st != 400 || body["errcode"] != "M_BAD_JSON" {
		t.Errorf("appservice send with a float: %d %v", st, body)
	}

	out := logs.String()
	for _, want := range []string{"bridge request refused", "appservice transaction failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log never says %q: the path was not driven", want)
		}
	}
	if strings.Contains(out, mark) || strings.Contains(out, "9e4d") {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, mark) || strings.Contains(l, "9e4d") {
				lines = append(lines, l)
			}
		}
		t.Fatalf("content reached the log:\n%s", strings.Join(lines, "\n"))
	}
}
