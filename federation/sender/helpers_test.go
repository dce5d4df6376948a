package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

const self = "hub.test"

// waitFor polls fn until it returns nil, failing the test with fn's last
// error after a generous deadline: no test depends on timing.
func waitFor(t testing.TB, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testLog() *slog.Logger {
	if os.Getenv("SENDER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// txn is one transaction as the fake remote saw it.
type txn struct {
	dest, id string
	pdus     []string // event IDs (the test PDUs carry theirs in content.body)
	edus     []string // edu_type/content.id
	accepted bool     // false: refused (down) or a duplicate ID
}

// fakeRemote stands for every remote server: it records every
// transaction and de-duplicates by transaction ID per destination, as a
// real homeserver does per origin.
type fakeRemote struct {
	allow *allowList

	mu       sync.Mutex
	txns     []txn
	seen     map[string]bool // dest|txnID accepted
	down     map[string]bool
	lose     map[string]int           // dest -> responses to lose after accepting
	hang     map[string]chan struct{} // dest -> calls block until closed
	hangErr  map[string]error         // returned after a hang ends
	entered  map[string]chan struct{} // dest -> signalled when a call starts
	violated []string                 // calls to servers the list refused
}

func newFakeRemote(allow *allowList) *fakeRemote {
	return &fakeRemote{allow: allow, seen: map[string]bool{}, down: map[string]bool{}, lose: map[string]int{},
		hang: map[string]chan struct{}{}, hangErr: map[string]error{}, entered: map[string]chan struct{}{}}
}

var errDown = errors.New("fake remote: connection refused")

func (f *fakeRemote) SendTransaction(ctx context.Context, req *federation.ReqSendTransaction) (*federation.RespSendTransaction, error) {
	if err := f.allow.ServerAllowed(req.Destination); err != nil {
		f.mu.Lock()
		f.violated = append(f.violated, req.Destination)
		f.mu.Unlock()
	}
	if req.Origin != self || req.TxnID == "" {
		return nil, fmt.Errorf("fake remote: bad request origin=%q txn=%q", req.Origin, req.TxnID)
	}
	f.mu.Lock()
	hang, ent := f.hang[req.Destination], f.entered[req.Destination]
	f.mu.Unlock()
	if ent != nil {
		select {
		case ent <- struct{}{}:
		default:
		}
	}
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	t := txn{dest: req.Destination, id: req.TxnID}
	for _, p := range req.PDUs {
		t.pdus = append(t.pdus, gjson.GetBytes(p, "content.body").String())
	}
	for _, e := range req.EDUs {
		t.edus = append(t.edus, gjson.GetBytes(e, "edu_type").String()+"/"+gjson.GetBytes(e, "content.id").String())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.hangErr[req.Destination]; err != nil && hang != nil {
		delete(f.hangErr, req.Destination)
		f.txns = append(f.txns, t)
		return nil, err
	}
	if f.down[req.Destination] {
		f.txns = append(f.txns, t)
		return nil, errDown
	}
	key := req.Destination + "|" + req.TxnID
	if !f.seen[key] {
		f.seen[key] = true
		t.accepted = true
	}
	f.txns = append(f.txns, t)
	if f.lose[req.Destination] > 0 {
		f.lose[req.Destination]--
		return nil, errors.New("fake remote: response lost")
	}
	return &federation.RespSendTransaction{PDUs: map[id.EventID]federation.PDUProcessingResult{}}, nil
}

func (f *fakeRemote) setDown(dest string, down bool) {
	f.mu.Lock()
	f.down[dest] = down
	f.mu.Unlock()
}

// received returns the PDUs and EDUs dest accepted, in order, counting
// each accepted transaction once.
func (f *fakeRemote) received(dest string) (pdus, edus []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.txns {
		if t.dest == dest && t.accepted {
			pdus = append(pdus, t.pdus...)
			edus = append(edus, t.edus...)
		}
	}
	return pdus, edus
}

func (f *fakeRemote) attempts(dest string) []txn {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []txn
	for _, t := range f.txns {
		if t.dest == dest {
			out = append(out, t)
		}
	}
	return out
}

// allowList is the trust list stand-in.
type allowList struct {
	mu      sync.Mutex
	servers map[string]bool
}

func newAllowList(servers ...string) *allowList {
	a := &allowList{servers: map[string]bool{}}
	for _, s := range servers {
		a.servers[s] = true
	}
	return a
}

func (a *allowList) ServerAllowed(server string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.servers[server] {
		return fmt.Errorf("server %s is not in the federation list", server)
	}
	return nil
}

func (a *allowList) remove(server string) {
	a.mu.Lock()
	delete(a.servers, server)
	a.mu.Unlock()
}

// countMetrics records drops by reason.
type countMetrics struct {
	mu      sync.Mutex
	dropped map[string]int
	ok, bad int
	lags    int
}

func (m *countMetrics) FederationTxn(_ context.Context, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ok {
		m.ok++
	} else {
		m.bad++
	}
}

func (m *countMetrics) FederationDelivered(context.Context, time.Duration) {
	m.mu.Lock()
	m.lags++
	m.mu.Unlock()
}

func (m *countMetrics) FederationDropped(_ context.Context, reason string, n int) {
	m.mu.Lock()
	if m.dropped == nil {
		m.dropped = map[string]int{}
	}
	m.dropped[reason] += n
	m.mu.Unlock()
}

func (m *countMetrics) drops(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dropped[reason]
}

// env is a hub's worth of real parts: an embedded NATS with JetStream on
// disk, a SQLite store, and a sender over them.
type env struct {
	t       testing.TB
	natsDir string
	bus     *bus.Bus
	st      *sqlite.Store
	remote  *fakeRemote
	allow   *allowList
	metrics *countMetrics
	mod     func(*Config)

	sender *Sender
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	rooms map[string]*roomState
}

type roomState struct {
	group int64
	depth int64
}

func newEnv(t testing.TB, allowed []string, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, natsDir: t.TempDir(), allow: newAllowList(allowed...), metrics: &countMetrics{}, mod: mod,
		rooms: map[string]*roomState{}}
	e.remote = newFakeRemote(e.allow)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	t.Cleanup(func() { _ = st.Close() })
	e.startBus()
	e.startSender()
	t.Cleanup(e.stop)
	return e
}

func (e *env) startBus() {
	e.t.Helper()
	cfg := bus.DefaultConfig(e.natsDir)
	cfg.Name = "sender-test"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := bus.Start(ctx, cfg, testLog())
	if err != nil {
		e.t.Fatal(err)
	}
	e.bus = b
}

func (e *env) startSender() {
	e.t.Helper()
	cfg := Config{ServerName: self, Bus: e.bus, Store: e.st, Transport: e.remote, Allow: e.allow,
		Metrics: e.metrics, Log: testLog(), BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	if e.mod != nil {
		e.mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := New(ctx, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.sender = s
	runCtx, stop := context.WithCancel(context.Background())
	e.cancel = stop
	e.done = make(chan struct{})
	go func() {
		defer close(e.done)
		if err := s.Run(runCtx); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-s.Ready():
	case <-e.done:
	}
}

// stopSender stops the sender and waits for it (a hub shutting down).
func (e *env) stopSender() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	e.cancel = nil
}

func (e *env) stop() {
	e.stopSender()
	if e.bus != nil {
		e.bus.Close()
		e.bus = nil
	}
}

// restart stops the sender and NATS and starts both again on the same
// data: what was acknowledged must survive.
func (e *env) restart() {
	e.stop()
	e.startBus()
	e.startSender()
}

func ptr(s string) *string { return &s }

// event builds a stored event whose PDU names its ID in content.body, so
// the fake remote can tell events apart.
func (e *env) event(room, id, sender, typ string, stateKey *string) store.NewEvent {
	rs := e.rooms[room]
	rs.depth++
	sk := ""
	if stateKey != nil {
		sk = fmt.Sprintf(`,"state_key":%q`, *stateKey)
	}
	js := fmt.Sprintf(`{"auth_events":[],"content":{"body":%q},"depth":%d,"origin_server_ts":1700000000000,`+
		`"prev_events":[],"room_id":%q,"sender":%q%s,"type":%q}`, id, rs.depth, room, sender, sk, typ)
	return store.NewEvent{Event: store.Event{EventID: id, RoomID: room, Type: typ, StateKey: stateKey,
		Sender: sender, Depth: rs.depth, OriginTS: 1700000000000, JSON: json.RawMessage(js)}, Local: true}
}

// write stores ne (moving the room's state for a state event) and
// publishes it on the event stream, as the outbox relay does.
func (e *env) write(ne store.NewEvent) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := e.rooms[ne.RoomID]
	ctx := context.Background()
	var pos int64
	err := e.st.WriteEvents(ctx, func(tx store.EventTx) error {
		ne.StateBefore, ne.StateAfter = rs.group, rs.group
		if ne.StateKey != nil {
			g, err := tx.NewStateGroup(ctx, ne.RoomID, rs.group,
				store.StateMap{{Type: ne.Type, StateKey: *ne.StateKey}: ne.EventID})
			if err != nil {
				return err
			}
			ne.StateAfter = g
		}
		p, err := tx.InsertEvent(ctx, ne)
		pos = p
		return err
	})
	if err != nil {
		e.t.Fatalf("write %s: %v", ne.EventID, err)
	}
	rs.group = ne.StateAfter
	msg := bus.EventMsg{RoomID: ne.RoomID, EventID: ne.EventID, Type: ne.Type, Sender: ne.Sender,
		StateKey: ne.StateKey, Membership: ne.Membership, Pos: pos, Data: ne.JSON}
	if err := e.bus.PublishEvent(ctx, msg); err != nil {
		e.t.Fatalf("publish %s: %v", ne.EventID, err)
	}
}

// room creates a room with the given memberships (user -> membership).
func (e *env) room(room string, members map[string]string) {
	e.t.Helper()
	err := e.st.WriteEvents(context.Background(), func(tx store.EventTx) error {
		return tx.CreateRoom(context.Background(), store.Room{RoomID: room, Version: "10", Creator: "@a:" + self})
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.rooms[room] = &roomState{}
	e.mu.Unlock()
	users := make([]string, 0, len(members))
	for u := range members {
		users = append(users, u)
	}
	sort.Strings(users)
	for i, u := range users {
		ne := e.event(room, fmt.Sprintf("$m%d-%s", i, room), u, "m.room.member", ptr(u))
		ne.Membership = members[u]
		e.write(ne)
	}
}

// send writes n messages from sender and returns their IDs.
func (e *env) send(room, sender, prefix string, n int) []string {
	e.t.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("$%s%04d", prefix, i)
		e.write(e.event(room, ids[i], sender, "m.room.message", nil))
	}
	return ids
}

func (e *env) depth(dest string) uint64 {
	e.t.Helper()
	n, err := e.sender.q.Depth(context.Background(), dest)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) status(dest string) (DestStatus, bool) {
	st, err := e.sender.Status(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range st {
		if s.Destination == dest {
			return s, true
		}
	}
	return DestStatus{}, false
}

// waitReceived waits until dest accepted exactly want (in order), then
// until its queue is empty.
func (e *env) waitReceived(dest string, want []string) {
	e.t.Helper()
	waitFor(e.t, dest+" receives", func() error {
		got, _ := e.remote.received(dest)
		if len(got) < len(want) {
			return fmt.Errorf("%d of %d PDUs", len(got), len(want))
		}
		return nil
	})
	got, _ := e.remote.received(dest)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("%s received %d PDUs %v,\nwant %d %v", dest, len(got), got, len(want), want)
	}
	waitFor(e.t, dest+" queue empty", func() error {
		if n := e.depth(dest); n != 0 {
			return fmt.Errorf("depth %d", n)
		}
		return nil
	})
}
