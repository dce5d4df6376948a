package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/canonjson"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
	"github.com/eimis-hub/eimis/internal/store/postgres"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

// poison marks the one request the faulty store refuses.
const poison = "POISON-7f3a"

// faultyStore is a real store whose event transactions fail (or panic)
// on the event carrying the poison, after writing it: a store error
// caused by one request, as PostgreSQL gives for a value it cannot hold.
// gate, when armed, holds the next transaction until released, so that
// a test can gather requests into one batch.
type faultyStore struct {
	store.Store
	panics  bool
	txs     atomic.Int64
	mu      sync.Mutex
	gate    chan struct{}
	entered chan struct{}
}

func (f *faultyStore) arm() (entered <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate, f.entered = make(chan struct{}), make(chan struct{})
	gate := f.gate
	return f.entered, func() { close(gate) }
}

func (f *faultyStore) WriteEvents(ctx context.Context, fn func(tx store.EventTx) error) error {
	f.mu.Lock()
	gate, entered := f.gate, f.entered
	f.gate, f.entered = nil, nil
	f.mu.Unlock()
	if gate != nil {
		close(entered)
		<-gate
	}
	f.txs.Add(1)
	return f.Store.WriteEvents(ctx, func(tx store.EventTx) error {
		return fn(faultyTx{EventTx: tx, f: f})
	})
}

type faultyTx struct {
	store.EventTx
	f *faultyStore
}

func (t faultyTx) InsertEvent(ctx context.Context, e store.NewEvent) (int64, error) {
	pos, err := t.EventTx.InsertEvent(ctx, e)
	if err == nil && bytes.Contains(e.Event.JSON, []byte(poison)) {
		if t.f.panics {
			panic("the store cannot hold " + poison)
		}
		return 0, fmt.Errorf("insert event: value %s refused by the store", poison)
	}
	return pos, err
}

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

// logBuffer collects log output of a test at debug level.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestServer(t *testing.T, st store.Store) (*Server, *logBuffer) {
	t.Helper()
	key, err := signingkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s := New(st, Config{ServerName: "hub.test", Key: key}, nil, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(s.Close)
	return s, logs
}

func message(body string) json.RawMessage {
	raw, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	return raw
}

// TestOnePoisonedRequest: one request the store refuses (or that makes
// the writer panic), in the same batch as many good ones, fails alone;
// every good one is committed, in one linear room, and nothing of the
// poisoned one is.
func TestOnePoisonedRequest(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		for _, panics := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/panics=%v", dialect, panics), func(t *testing.T) {
				testOnePoisonedRequest(t, dialect, panics)
			})
		}
	}
}

func testOnePoisonedRequest(t *testing.T, dialect string, panics bool) {
	ctx := context.Background()
	f := &faultyStore{Store: openStore(t, dialect), panics: panics}
	s, logs := newTestServer(t, f)
	const alice = id.UserID("@alice:hub.test")
	room, err := s.CreateRoom(ctx, CreateRequest{Creator: alice})
	if err != nil {
		t.Fatal(err)
	}

	// Hold the writer in a first batch, queue the good requests and the
	// poisoned one behind it, then let it go: they share the next batch.
	entered, release := f.arm()
	blocker := make(chan error, 1)
	go func() {
		_, err := s.Send(ctx, Submit{RoomID: room.RoomID, Sender: alice, Type: "m.room.message", Content: message("first")})
		blocker <- err
	}()
	<-entered
	const good = 40
	type outcome struct {
		body string
		res  *Result
		err  error
	}
	out := make(chan outcome, good+1)
	send := func(body string, txn string) {
		res, err := s.Send(ctx, Submit{RoomID: room.RoomID, Sender: alice, Type: "m.room.message", Content: message(body),
			Txn: &store.TxnKey{UserID: string(alice), DeviceID: "D", TxnID: txn}})
		out <- outcome{body, res, err}
	}
	for i := range good {
		if i == good/2 {
			go send("the "+poison+" message", "poison")
		}
		go send(fmt.Sprintf("good %d", i), fmt.Sprint(i))
	}
	waitFor(t, func() bool { return len(s.reqs) == good+1 }, "all requests queued behind the held batch")
	txsBefore := f.txs.Load()
	release()
	if err := <-blocker; err != nil {
		t.Fatalf("the held request failed: %v", err)
	}

	var goodIDs []id.EventID
	for range good + 1 {
		o := <-out
		if strings.Contains(o.body, poison) {
			if o.err == nil {
				t.Fatal("the poisoned request succeeded")
			}
			continue
		}
		if o.err != nil {
			t.Fatalf("good request %q failed: %v", o.body, o.err)
		}
		goodIDs = append(goodIDs, o.res.EventID)
	}
	// The held transaction, the batch, then one per request of the batch.
	if got := f.txs.Load() - txsBefore; got != good+3 {
		t.Fatalf("%d transactions, want %d (the held one, the batch, then each of its %d requests)", got, good+3, good+1)
	}

	// The writer's room state survived: one more send links to the last.
	after, err := s.Send(ctx, Submit{RoomID: room.RoomID, Sender: alice, Type: "m.room.message", Content: message("after")})
	if err != nil {
		t.Fatalf("send after the failure: %v", err)
	}
	checkLinear(t, f.Store, room.RoomID, append(goodIDs, after.EventID))
	if strings.Contains(logs.String(), poison) {
		t.Fatalf("the log carries the request's content:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "event request failed") {
		t.Fatalf("the failure was not logged:\n%s", logs)
	}
}

// checkLinear checks that every event of the room links to the one
// before it, that want are all there, and that no stored event carries
// the poison.
func checkLinear(t *testing.T, st store.Store, roomID id.RoomID, want []id.EventID) {
	t.Helper()
	evs, err := st.RoomEvents(context.Background(), string(roomID), 0, 1<<62, 10000, store.Forward)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	var prev string
	for i, e := range evs {
		if bytes.Contains(e.JSON, []byte(poison)) {
			t.Fatalf("the poisoned event was stored: %s", e.EventID)
		}
		p, err := ParsePDU(e.JSON)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && (len(p.PrevEvents) != 1 || string(p.PrevEvents[0]) != prev) {
			t.Fatalf("event %d (%s) links to %v, want [%s]", i, e.EventID, p.PrevEvents, prev)
		}
		if p.Depth != int64(i+1) {
			t.Fatalf("event %d has depth %d", i, p.Depth)
		}
		prev = e.EventID
		have[e.EventID] = true
	}
	for _, w := range want {
		if !have[string(w)] {
			t.Fatalf("accepted event %s is not in the room", w)
		}
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBadContentFailsAlone: content canonical JSON refuses is refused
// with ErrBadEvent before it reaches the writer, while good sends go on.
func TestBadContentFailsAlone(t *testing.T) {
	ctx := context.Background()
	s, logs := newTestServer(t, openStore(t, "sqlite"))
	const alice = id.UserID("@alice:hub.test")
	room, err := s.CreateRoom(ctx, CreateRequest{Creator: alice})
	if err != nil {
		t.Fatal(err)
	}
	sk := func(s string) *string { return &s }
	cases := []struct {
		name     string
		sub      Submit
		err      error
		class    canonjson.Class
		notFound bool
	}{
		{"float", Submit{Type: "m.room.message", Content: json.RawMessage(`{"body":"` + poison + `","n":1.5}`)}, ErrBadEvent, canonjson.Float, false},
		{"float key", Submit{Type: "m.room.message", Content: json.RawMessage(`{"` + poison + `":1.0}`)}, ErrBadEvent, canonjson.Float, false},
		{"integer out of range", Submit{Type: "m.room.message", Content: json.RawMessage(`{"` + poison + `":9007199254740992}`)}, ErrBadEvent, canonjson.IntRange, false},
		{"power level out of range", Submit{Type: "m.room.power_levels", StateKey: sk(""), Content: json.RawMessage(`{"users":{"@alice:hub.test":9007199254740992}}`)}, ErrBadEvent, canonjson.IntRange, false},
		{"lone surrogate", Submit{Type: "m.room.message", Content: json.RawMessage(`{"body":"` + poison + `\ud800"}`)}, ErrBadEvent, canonjson.InvalidUTF8, false},
		{"invalid UTF-8", Submit{Type: "m.room.message", Content: json.RawMessage("{\"body\":\"" + poison + "\xff\"}")}, ErrBadEvent, canonjson.InvalidUTF8, false},
		{"5000 deep", Submit{Type: "m.room.message", Content: json.RawMessage(`{"` + poison + `":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`)}, ErrBadEvent, canonjson.TooDeep, false},
		{"duplicate key", Submit{Type: "m.room.message", Content: json.RawMessage(`{"` + poison + `":1,"` + poison + `":2}`)}, ErrBadEvent, canonjson.DuplicateName, false},
		{"NUL in state key", Submit{Type: "m.room.topic", StateKey: sk("a\x00b"), Content: json.RawMessage(`{"topic":"x"}`)}, ErrBadEvent, 0, false},
		{"invalid UTF-8 in type", Submit{Type: "m.\xff", Content: json.RawMessage(`{}`)}, ErrBadEvent, 0, false},
		{"invalid UTF-8 in room ID", Submit{RoomID: "!\xff:hub.test", Type: "m.room.message", Content: json.RawMessage(`{}`)}, ErrUnknownRoom, 0, true},
		{"NUL in transaction ID", Submit{Type: "m.room.message", Content: json.RawMessage(`{}`), Txn: &store.TxnKey{UserID: string(alice), DeviceID: "D", TxnID: "\x00"}}, ErrBadEvent, 0, false},
	}
	var wg sync.WaitGroup
	var goodFailed atomic.Int64
	stop := make(chan struct{})
	for range 8 { // good traffic all along
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Send(ctx, Submit{RoomID: room.RoomID, Sender: alice, Type: "m.room.message", Content: message("good")}); err != nil {
					goodFailed.Add(1)
				}
			}
		})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.sub.Sender = alice
			if c.sub.RoomID == "" {
				c.sub.RoomID = room.RoomID
			}
			_, err := s.Send(ctx, c.sub)
			if !errors.Is(err, c.err) {
				t.Fatalf("got %v, want %v", err, c.err)
			}
			if e, ok := canonjson.As(err); c.class != 0 && (!ok || e.Class != c.class) {
				t.Fatalf("got %v, want class %v", err, c.class)
			}
			if strings.Contains(err.Error(), poison) {
				t.Fatalf("the error quotes the content: %v", err)
			}
		})
	}
	close(stop)
	wg.Wait()
	if n := goodFailed.Load(); n > 0 {
		t.Fatalf("%d good sends failed", n)
	}
	if strings.Contains(logs.String(), poison) {
		t.Fatalf("the log carries content:\n%s", logs)
	}

	// createRoom's content is checked too.
	for _, req := range []CreateRequest{
		{Creator: alice, PowerLevelOverride: json.RawMessage(`{"users_default":1.5}`)},
		{Creator: alice, CreationContent: json.RawMessage(`{"` + poison + `":1e300}`)},
		{Creator: alice, InitialState: []StateEvent{{Type: "m.room.topic", Content: json.RawMessage(`{"topic":"` + poison + `","n":9007199254740992}`)}}},
	} {
		if _, err := s.CreateRoom(ctx, req); !errors.Is(err, ErrBadEvent) {
			t.Fatalf("createRoom with bad content: got %v, want ErrBadEvent", err)
		}
	}
}

// TestIsolationCostsNothingWhenAllIsWell: a batch of good requests is one
// transaction.
func TestIsolationCostsNothingWhenAllIsWell(t *testing.T) {
	ctx := context.Background()
	f := &faultyStore{Store: openStore(t, "sqlite")}
	s, _ := newTestServer(t, f)
	room, err := s.CreateRoom(ctx, CreateRequest{Creator: "@alice:hub.test"})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := f.arm()
	go func() {
		_, _ = s.Send(ctx, Submit{RoomID: room.RoomID, Sender: "@alice:hub.test", Type: "m.room.message", Content: message("first")})
	}()
	<-entered
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := s.Send(ctx, Submit{RoomID: room.RoomID, Sender: "@alice:hub.test", Type: "m.room.message", Content: message(fmt.Sprint(i))}); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, func() bool { return len(s.reqs) == 20 }, "requests queued")
	before := f.txs.Load()
	release()
	wg.Wait()
	if got := f.txs.Load() - before; got != 2 {
		t.Fatalf("%d transactions, want 2 (the held one, then one batch)", got)
	}
}
