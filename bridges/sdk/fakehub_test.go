package sdk_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/gorilla/websocket"
)

// fakeHub speaks just enough of the Bridge Protocol for the SDK's tests
// and examples: hello/welcome, bind, create_room, send (the message comes
// back as an event), ack. The real hub is tested with the SDK in
// internal/hub/bridge_test.go.
type fakeHub struct {
	*httptest.Server
	mu      sync.Mutex
	acked   []string
	conns   []*websocket.Conn
	hellos  int
	cursor  int
	refuse  string // an error code to refuse hellos with
	onFrame func(c *websocket.Conn, f map[string]any) bool
}

const fakeToken = "secret-token"

func startFakeHub() *fakeHub {
	h := &fakeHub{}
	up := websocket.Upgrader{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_eimis/bridge/v1/ws" {
			http.NotFound(w, r)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.mu.Unlock()
		h.serve(c)
	}))
	return h
}

func (h *fakeHub) write(c *websocket.Conn, v any) {
	b, _ := json.Marshal(v)
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = c.WriteMessage(websocket.TextMessage, b)
}

func (h *fakeHub) serve(c *websocket.Conn) {
	defer c.Close()
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var f map[string]any
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		if h.onFrame != nil && h.onFrame(c, f) {
			continue
		}
		id, _ := f["id"].(string)
		result := func(v any) { h.write(c, map[string]any{"type": "result", "id": id, "result": v}) }
		switch f["type"] {
		case "hello":
			h.mu.Lock()
			h.hellos++
			refuse := h.refuse
			h.mu.Unlock()
			if f["token"] != fakeToken || refuse != "" {
				code := refuse
				if code == "" {
					code = "EIMIS_BAD_TOKEN"
				}
				h.write(c, map[string]any{"type": "error", "code": code, "message": "refused"})
				_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, code))
				return
			}
			h.write(c, map[string]any{"type": "welcome", "protocol": 1, "bridge_id": "example", "operator": "acme",
				"server_name": "hub.example", "users": []string{}, "cursor": "0", "resumed": false,
				"limits": map[string]int{"max_frame_bytes": 1 << 20, "max_unacked": 512, "max_inflight_requests": 136}})
		case "bind":
			idnat := f["idnat"].(string)
			result(map[string]any{"user_id": "@" + idnat + ":hub.example", "idnat": idnat, "display_name": "Hélène Fontenelle - Médecin", "rooms": []any{}})
		case "create_room":
			result(map[string]string{"room_id": "!room1:hub.example"})
		case "send":
			evID := "$" + f["txn_id"].(string)
			result(map[string]string{"event_id": evID})
			h.mu.Lock()
			h.cursor++
			cursor := fmt.Sprint(h.cursor)
			h.mu.Unlock()
			user := "@" + f["user"].(string) + ":hub.example"
			h.write(c, map[string]any{"type": "event", "cursor": cursor, "room_id": f["room_id"], "users": []string{user},
				"event": map[string]any{"event_id": evID, "room_id": f["room_id"], "type": "m.room.message", "sender": user,
					"origin_server_ts": 1700000000000, "content": map[string]any{"msgtype": f["msgtype"], "body": f["body"]}}})
		case "ack":
			h.mu.Lock()
			h.acked = append(h.acked, f["cursor"].(string))
			h.mu.Unlock()
		}
	}
}

// dropAll cuts every connection, as a network failure would.
func (h *fakeHub) dropAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.UnderlyingConn().Close()
	}
	h.conns = nil
}
