package inbound

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
	"github.com/eimis-hub/eimis/internal/store/postgres"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var dialects = []string{"sqlite", "postgres"}

func openStore(t *testing.T, dialect string) store.Store {
	t.Helper()
	ctx := context.Background()
	var st store.Store
	var err error
	if dialect == "sqlite" {
		st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	} else {
		st, err = postgres.Open(ctx, pgtest.URL(t))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// network is a few room servers in one process, connected by an
// in-memory transport that calls each other's federation handlers with
// the caller as the authenticated origin. Delivery of outbound events
// (the sender's job) is explicit: flush.
type network struct {
	t       *testing.T
	nodes   map[string]*node
	allowed map[string]bool
	// refusedUsers are refused by every node's UserAllowed.
	refusedUsers map[string]bool
	txn          int
}

type node struct {
	name string
	st   store.Store
	rs   *rooms.Server
	in   *Server
	key  signingkey.Key
	net  *network
	// drop, when set, decides which outbound events are lost on the way.
	drop func(e store.Event) bool
	// noMissing makes this node's get_missing_events fail (peers then
	// fall back to state_ids).
	noMissing bool

	mu     sync.Mutex
	queue  []store.Event
	counts map[string]int
}

func (n *node) Accepted(evs []store.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.queue = append(n.queue, evs...)
}

func (n *node) Count(what string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.counts[what]++
}

func (n *node) count(what string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.counts[what]
}

func (n *node) ServerAllowed(server string) error {
	if !n.net.allowed[server] {
		return fmt.Errorf("server %s not in the list", server)
	}
	return nil
}

func (n *node) UserAllowed(_ context.Context, user string) error {
	if n.net.refusedUsers[user] {
		return fmt.Errorf("user %s refused", user)
	}
	return n.ServerAllowed(id.UserID(user).Homeserver())
}

func newNetwork(t *testing.T, dialect string, names ...string) *network {
	nw := &network{t: t, nodes: map[string]*node{}, allowed: map[string]bool{}, refusedUsers: map[string]bool{}}
	for _, name := range names {
		nw.allowed[name] = true
	}
	for _, name := range names {
		key, err := signingkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		n := &node{name: name, key: key, net: nw, counts: map[string]int{}, st: openStore(t, dialect)}
		nw.nodes[name] = n
		// Every test user of the server has an account.
		for _, lp := range []string{"alice", "bob", "carol", "dave"} {
			if err := n.st.CreateAccount(t.Context(), store.Account{Localpart: lp, DisplayName: lp + " of " + name}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range nw.nodes {
		n.rs = rooms.New(n.st, rooms.Config{ServerName: n.name, Key: n.key, RemoteKeys: nw.keys}, n, slog.New(slog.DiscardHandler))
		t.Cleanup(n.rs.Close)
		n.in = New(Config{Rooms: n.rs, Store: n.st, Client: &memClient{from: n.name, net: nw}, Servers: n, Users: n,
			Receipts: n.st, Counter: n, Log: slog.New(slog.DiscardHandler)})
	}
	return nw
}

func (nw *network) keys(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
	if n, ok := nw.nodes[server]; ok && string(keyID) == n.key.ID {
		return id.SigningKey(n.key.PublicBase64()), time.Now().Add(time.Hour), nil
	}
	return "", time.Time{}, fmt.Errorf("unknown key %s of %s", keyID, server)
}

// flush delivers every queued event of every node to the servers of its
// room (and to a membership event's target server), in transactions, until
// nothing is left: the sender's job, made explicit.
func (nw *network) flush() {
	nw.t.Helper()
	for round := 0; ; round++ {
		if round > 100 {
			nw.t.Fatal("flush does not settle")
		}
		moved := false
		for _, name := range nw.sortedNames() {
			n := nw.nodes[name]
			n.mu.Lock()
			q := n.queue
			n.queue = nil
			n.mu.Unlock()
			byDest := map[string][]json.RawMessage{}
			for _, e := range q {
				if id.UserID(e.Sender).Homeserver() != n.name {
					continue // only a server's own events leave it
				}
				if n.drop != nil && n.drop(e) {
					continue
				}
				dests, err := n.in.ServersInRoom(nw.t.Context(), e.RoomID)
				if err != nil {
					nw.t.Fatal(err)
				}
				if e.StateKey != nil && e.Type == "m.room.member" {
					if hs := id.UserID(*e.StateKey).Homeserver(); hs != n.name && !slices.Contains(dests, hs) && e.Membership != "invite" {
						dests = append(dests, hs)
					}
				}
				for _, d := range dests {
					byDest[d] = append(byDest[d], e.JSON)
				}
			}
			for _, d := range sortedKeys(byDest) {
				moved = true
				nw.txn++
				resp := nw.send(n.name, d, strconv.Itoa(nw.txn), byDest[d])
				for evID, r := range resp.PDUs {
					if r.Error != "" {
						nw.t.Logf("%s → %s: %s: %s", n.name, d, evID, r.Error)
					}
				}
			}
		}
		if !moved {
			return
		}
	}
}

func (nw *network) send(from, to, txnID string, pdus []json.RawMessage) *federation.RespSendTransaction {
	nw.t.Helper()
	body, _ := json.Marshal(map[string]any{"origin": from, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus})
	var resp federation.RespSendTransaction
	if err := nw.do(from, to, http.MethodPut, "/_matrix/federation/v1/send/"+url.PathEscape(txnID), nil, body, &resp); err != nil {
		nw.t.Fatalf("send %s → %s: %v", from, to, err)
	}
	return &resp
}

func (nw *network) sortedNames() []string { return sortedKeys(nw.nodes) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// do calls to's federation handler as from.
func (nw *network) do(from, to, method, path string, q url.Values, body []byte, out any) error {
	n, ok := nw.nodes[to]
	if !ok {
		return fmt.Errorf("no server %s", to)
	}
	if !nw.allowed[to] {
		return fmt.Errorf("destination %s not in the list", to)
	}
	target := path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req := httptest.NewRequestWithContext(fedctx.WithOrigin(nw.t.Context(), from), method, target, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	n.in.Handler().ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		var e mautrix.RespError
		_ = json.Unmarshal(raw, &e)
		e.StatusCode = rec.Code
		return e
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// memClient is one node's federation client over the in-memory network.
type memClient struct {
	from string
	net  *network
}

func seg(v any) string { return url.PathEscape(fmt.Sprint(v)) }

func (c *memClient) GetMissingEvents(_ context.Context, req *federation.ReqGetMissingEvents) (*federation.RespGetMissingEvents, error) {
	if n := c.net.nodes[req.ServerName]; n != nil && n.noMissing {
		return nil, fmt.Errorf("get_missing_events disabled")
	}
	body, _ := json.Marshal(req)
	var out federation.RespGetMissingEvents
	return &out, c.net.do(c.from, req.ServerName, http.MethodPost, "/_matrix/federation/v1/get_missing_events/"+seg(req.RoomID), nil, body, &out)
}

func (c *memClient) GetStateIDs(_ context.Context, server string, roomID id.RoomID, eventID id.EventID) (*federation.RespGetStateIDs, error) {
	var out federation.RespGetStateIDs
	return &out, c.net.do(c.from, server, http.MethodGet, "/_matrix/federation/v1/state_ids/"+seg(roomID), url.Values{"event_id": {string(eventID)}}, nil, &out)
}

func (c *memClient) GetEvent(_ context.Context, server string, eventID id.EventID) (*federation.RespBackfill, error) {
	var out federation.RespBackfill
	return &out, c.net.do(c.from, server, http.MethodGet, "/_matrix/federation/v1/event/"+seg(eventID), nil, nil, &out)
}

func (c *memClient) GetEventAuthChain(_ context.Context, server string, roomID id.RoomID, eventID id.EventID) (*federation.RespGetEventAuthChain, error) {
	var out federation.RespGetEventAuthChain
	return &out, c.net.do(c.from, server, http.MethodGet, "/_matrix/federation/v1/event_auth/"+seg(roomID)+"/"+seg(eventID), nil, nil, &out)
}

func (c *memClient) MakeJoin(_ context.Context, req *federation.ReqMakeJoin) (*federation.RespMakeJoin, error) {
	q := url.Values{}
	for _, v := range req.SupportedVersions {
		q.Add("ver", string(v))
	}
	var out federation.RespMakeJoin
	return &out, c.net.do(c.from, req.Via, http.MethodGet, "/_matrix/federation/v1/make_join/"+seg(req.RoomID)+"/"+seg(req.UserID), q, nil, &out)
}

func (c *memClient) SendJoin(_ context.Context, req *federation.ReqSendJoin) (*federation.RespSendJoin, error) {
	var out federation.RespSendJoin
	return &out, c.net.do(c.from, req.Via, http.MethodPut, "/_matrix/federation/v2/send_join/"+seg(req.RoomID)+"/"+seg(req.EventID), nil, req.Event, &out)
}

func (c *memClient) MakeLeave(_ context.Context, req *federation.ReqMakeLeave) (*federation.RespMakeLeave, error) {
	var out federation.RespMakeLeave
	return &out, c.net.do(c.from, req.Via, http.MethodGet, "/_matrix/federation/v1/make_leave/"+seg(req.RoomID)+"/"+seg(req.UserID), nil, nil, &out)
}

func (c *memClient) SendLeave(_ context.Context, req *federation.ReqSendLeave) error {
	return c.net.do(c.from, req.Via, http.MethodPut, "/_matrix/federation/v2/send_leave/"+seg(req.RoomID)+"/"+seg(req.EventID), nil, req.Event, nil)
}

func (c *memClient) SendInvite(_ context.Context, req *federation.ReqSendInvite) (*federation.RespSendInvite, error) {
	body, _ := json.Marshal(req)
	var out federation.RespSendInvite
	return &out, c.net.do(c.from, req.UserID.Homeserver(), http.MethodPut, "/_matrix/federation/v2/invite/"+seg(req.RoomID)+"/"+seg(gjsonEventID(req.Event, req.RoomVersion)), nil, body, &out)
}

func (c *memClient) QueryDirectory(_ context.Context, server string, alias id.RoomAlias) (*mautrix.RespAliasResolve, error) {
	var out mautrix.RespAliasResolve
	return &out, c.net.do(c.from, server, http.MethodGet, "/_matrix/federation/v1/query/directory", url.Values{"room_alias": {string(alias)}}, nil, &out)
}

func (c *memClient) Backfill(_ context.Context, req *federation.ReqBackfill) (*federation.RespBackfill, error) {
	q := url.Values{"limit": {strconv.Itoa(req.Limit)}}
	for _, v := range req.BackfillFrom {
		q.Add("v", string(v))
	}
	var out federation.RespBackfill
	return &out, c.net.do(c.from, req.ServerName, http.MethodGet, "/_matrix/federation/v1/backfill/"+seg(req.RoomID), q, nil, &out)
}

func gjsonEventID(raw json.RawMessage, v id.RoomVersion) id.EventID {
	p, err := rooms.ParsePDU(raw)
	if err != nil {
		return ""
	}
	evID, _ := p.GetEventID(v)
	return evID
}

// Helpers on a node.

func (n *node) createRoom(t *testing.T, creator id.UserID, version id.RoomVersion, preset string) id.RoomID {
	t.Helper()
	res, err := n.rs.CreateRoom(t.Context(), rooms.CreateRequest{Creator: creator, Preset: preset, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	return res.RoomID
}

func (n *node) send(t *testing.T, room id.RoomID, sender id.UserID, typ string, stateKey *string, content any) id.EventID {
	t.Helper()
	raw, _ := json.Marshal(content)
	res, err := n.rs.Send(t.Context(), rooms.Submit{RoomID: room, Sender: sender, Type: typ, StateKey: stateKey, Content: raw})
	if err != nil {
		t.Fatalf("%s: send %s: %v", n.name, typ, err)
	}
	return res.EventID
}

func (n *node) state(t *testing.T, room id.RoomID) store.StateMap {
	t.Helper()
	evs, err := n.st.CurrentState(t.Context(), string(room))
	if err != nil {
		t.Fatal(err)
	}
	m := store.StateMap{}
	for _, e := range evs {
		m[store.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e.EventID
	}
	return m
}

func (n *node) membership(t *testing.T, room id.RoomID, user id.UserID) string {
	t.Helper()
	ev, err := n.st.CurrentStateEvent(t.Context(), string(room), "m.room.member", string(user))
	if err != nil {
		return ""
	}
	return ev.Membership
}

// has reports whether the event is stored and servable to clients.
func (n *node) has(t *testing.T, evID id.EventID) bool {
	t.Helper()
	evs, err := n.st.EventsByID(t.Context(), []string{string(evID)})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs) == 1
}

func (n *node) flags(t *testing.T, evID id.EventID) (store.EventFlags, bool) {
	t.Helper()
	evs, err := n.st.EventsByIDAny(t.Context(), []string{string(evID)})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		return 0, false
	}
	return evs[0].Flags, true
}
