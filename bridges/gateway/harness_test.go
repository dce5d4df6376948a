package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/outbox"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

const server = "hub.test"

// env is a hub reduced to what the gateway uses: a real store, bus, room
// server with the trust space's gate, identity service and operator
// registry; only the HTTP server is the gateway alone.
type env struct {
	st    store.Store
	ops   *operators.Registry
	rooms *rooms.Server
	g     *gateway.Gateway
	url   string
	dec   *gateway.Decoder
	token string // of bridge "acme-app", operator "acme"
}

func testLog() *slog.Logger {
	if os.Getenv("EIMIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// people: the test directory, where "mallory" is no longer registered.
func people() []directory.Practitioner {
	ps := hubtest.People()
	for i := range ps {
		if ps[i].IDNat == hubtest.Localpart("mallory") {
			ps[i].Active = false
		}
	}
	return ps
}

func newEnv(t *testing.T, mod func(*gateway.Config)) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	log := testLog()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	bcfg := bus.DefaultConfig(filepath.Join(dir, "nats"))
	bcfg.SyncAlways = false
	b, err := bus.Start(ctx, bcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ix := directory.NewIndexBuilder()
	for _, p := range people() {
		ix.Add(p)
	}
	atomicDir := &directory.Atomic{}
	atomicDir.Swap(ix.Build())
	pol := policy.New(server, atomicDir, nil)
	relay := outbox.New(st, b, log, 5*time.Second)
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		relay.Run(ctx)
	}()
	key, err := signingkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	rs := rooms.New(st, rooms.Config{ServerName: server, Key: key, Gate: pol}, relay, log)
	ids := identity.New(st, server, 4)
	ids.SetAdmission(pol)
	ops := operators.New(st, log)
	if err := ops.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Add(ctx, operators.Operator{ID: "acme", Name: "ACME", ServerNames: []string{"acme.example"},
		Contact: "security@acme.example"}, "test"); err != nil {
		t.Fatal(err)
	}
	token, _, err := gateway.AddBridge(ctx, st, "acme-app", "acme")
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{
		ServerName: server, Store: st, Rooms: rs, Policy: pol, IDs: ids, Operators: ops, Feeds: b,
		Search: func(q string, limit int) []directory.Entry { return atomicDir.Load().Search(q, limit) },
		Log:    log,
		// Most tests are about something else than consent: they bind
		// under the insecure option. consent_test.go tests consent.
		Consent: consent.New(consent.Config{Store: st, BridgeInsecure: true, Log: log}),
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ops.OnChange(g.OperatorChanged)
	srv := httptest.NewServer(g)
	dec, err := gateway.NewDecoder(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.CloseClientConnections()
		g.Close()
		srv.Close()
		rs.Close()
		cancel()
		<-relayDone
		b.Close()
		_ = st.Close()
	})
	return &env{st: st, ops: ops, rooms: rs, g: g, url: "ws" + strings.TrimPrefix(srv.URL, "http") + gateway.Path, dec: dec, token: token}
}

// wsClient is a raw protocol client: it sends any bytes and checks every
// frame the hub sends against the protocol's schemas.
type wsClient struct {
	t  *testing.T
	e  *env
	ws *websocket.Conn
}

func (e *env) dial(t *testing.T) *wsClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(e.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	return &wsClient{t: t, e: e, ws: ws}
}

func (c *wsClient) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

// frame is any frame from the hub, loosely decoded.
type frame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Field   string          `json:"field"`
	Result  json.RawMessage `json:"result"`
	Cursor  string          `json:"cursor"`
	Users   []string        `json:"users"`
	Status  string          `json:"status"`
	Event   struct {
		EventID string          `json:"event_id"`
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	} `json:"event"`
	raw []byte
}

// next reads the next frame; ok is false when the connection ended
// (closeText then holds the close reason).
func (c *wsClient) next() (f frame, closeText string, ok bool) {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		if ce, isClose := err.(*websocket.CloseError); isClose {
			return frame{}, ce.Text, false
		}
		return frame{}, "read error: " + err.Error(), false
	}
	if err := c.e.dec.CheckOutgoing(data); err != nil {
		c.t.Errorf("the hub sent a frame outside its schema: %v\n%s", err, data)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatalf("undecodable frame %s", data)
	}
	f.raw = data
	return f, "", true
}

func (c *wsClient) mustNext() frame {
	c.t.Helper()
	f, why, ok := c.next()
	if !ok {
		c.t.Fatalf("connection ended: %s", why)
	}
	return f
}

// expectClose reads until the connection ends and returns the frames
// before it and the close reason.
func (c *wsClient) expectClose() ([]frame, string) {
	c.t.Helper()
	var fs []frame
	for {
		f, why, ok := c.next()
		if !ok {
			return fs, why
		}
		fs = append(fs, f)
	}
}

// hello completes the handshake and returns the welcome.
func (c *wsClient) hello(token string) frame {
	c.t.Helper()
	c.send(map[string]any{"type": "hello", "protocol": 1, "token": token})
	f := c.mustNext()
	if f.Type != "welcome" {
		c.t.Fatalf("hello answered with %s", f.raw)
	}
	return f
}

// request sends a request and returns the answer with the same id,
// keeping events that came meanwhile.
func (c *wsClient) request(req map[string]any) (frame, []frame) {
	c.t.Helper()
	c.send(req)
	var others []frame
	for {
		f := c.mustNext()
		if (f.Type == "result" || f.Type == "error") && f.ID == req["id"] {
			return f, others
		}
		others = append(others, f)
	}
}

func (c *wsClient) mustResult(req map[string]any, out any) []frame {
	c.t.Helper()
	f, others := c.request(req)
	if f.Type != "result" {
		c.t.Fatalf("%s refused: %s", req["type"], f.raw)
	}
	if out != nil {
		if err := json.Unmarshal(f.Result, out); err != nil {
			c.t.Fatal(err)
		}
	}
	return others
}
