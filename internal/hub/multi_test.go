package hub_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

// startNATS runs a standalone JetStream server on loopback, as an
// external production cluster would be.
func startNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// TestTwoInstances runs two hub processes' worth of components on one
// PostgreSQL and one NATS server: a message sent through instance A wakes
// a /sync long-poll waiting on instance B, and concurrent sends through
// both instances to one room keep a single, linear history.
func TestTwoInstances(t *testing.T) {
	dbURL := pgtest.URL(t)
	natsURL := startNATS(t)
	key := hubtest.SigningKeyFile(t)
	a := hubtest.Start(t, hubtest.Options{Dialect: "postgres", DatabaseURL: dbURL, NATSURL: natsURL, SigningKeyPath: key})
	b := hubtest.Start(t, hubtest.Options{Dialect: "postgres", DatabaseURL: dbURL, NATSURL: natsURL, SigningKeyPath: key})
	ctx := ctxT(t)

	alice := a.NewUser(t, "alice") // logged in through A
	a.CreateUser(t, "bob", "pw-bob")
	bob := b.Client(t, "bob", "pw-bob") // logged in through B

	room, first := sharedRoom(t, alice, bob)

	// Bob's long-poll on B is waiting before Alice sends on A.
	type result struct {
		resp *mautrix.RespSync
		err  error
		took time.Duration
	}
	got := make(chan result, 1)
	go func() {
		start := time.Now()
		resp, err := bob.SyncRequest(ctx, 30000, first.NextBatch, "", false, "")
		got <- result{resp, err, time.Since(start)}
	}()
	time.Sleep(200 * time.Millisecond) // let the poll reach the server; correctness does not depend on it
	sent, err := alice.SendText(ctx, room.RoomID, "across instances")
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	jr := r.resp.Rooms.Join[room.RoomID]
	if jr == nil || len(jr.Timeline.Events) == 0 || jr.Timeline.Events[len(jr.Timeline.Events)-1].ID != sent.EventID {
		t.Fatalf("long-poll on B did not return the event sent on A (took %v)", r.took)
	}
	if r.took > 25*time.Second {
		t.Fatalf("long-poll returned by timeout, not by wake-up (%v)", r.took)
	}

	// Concurrent senders on both instances, one room.
	bobOnA := hubtest.ClientFor(t, a.URL, bob)
	aliceOnB := hubtest.ClientFor(t, b.URL, alice)
	const perClient = 40
	var wg sync.WaitGroup
	errs := make(chan error, 4*perClient)
	for ci, cli := range []*mautrix.Client{alice, bob, bobOnA, aliceOnB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				if _, err := cli.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
					map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("c%d-%d", ci, i)},
					mautrix.ReqSendEvent{TransactionID: fmt.Sprintf("c%d-%d", ci, i)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent send: %v", err)
	}
	checkLinearRoom(t, a.Store, string(room.RoomID), a.Key.PublicBase64(), a.Key.ID, 4*perClient+1)

	// Logout through A: the same token stops working on B, which had it
	// cached, without waiting for the cache's TTL.
	if _, err := bob.Whoami(ctx); err != nil {
		t.Fatalf("whoami on B before logout: %v", err)
	}
	if _, err := bobOnA.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	hubtest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if _, err := bob.Whoami(ctx); respErr(err) != "M_UNKNOWN_TOKEN" {
			return fmt.Errorf("token still accepted on B: %v", err)
		}
		return nil
	})
}

// checkLinearRoom verifies a room's stored history: one chain (each event's
// single prev_event is the event before it), increasing depth, valid
// content hash, event ID and signature, and at least minMessages messages.
func checkLinearRoom(t *testing.T, st store.Store, roomID, pubKey, keyID string, minMessages int) {
	t.Helper()
	ctx := context.Background()
	max, err := st.MaxPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.RoomEvents(ctx, roomID, 0, max, 0, store.Forward)
	if err != nil {
		t.Fatal(err)
	}
	room, err := st.GetRoom(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	version := id.RoomVersion(room.Version)
	getKey := func(server string, kid id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
		if string(kid) == keyID {
			return id.SigningKey(pubKey), time.Now().Add(time.Hour), nil
		}
		return "", time.Time{}, nil
	}
	messages := 0
	var prev *store.Event
	for i := range evs {
		e := evs[i]
		p, err := rooms.ParsePDU(e.JSON)
		if err != nil {
			t.Fatal(err)
		}
		if !p.VerifyContentHash() {
			t.Fatalf("event %s: content hash mismatch", e.EventID)
		}
		if evID, err := p.GetEventID(version); err != nil || string(evID) != e.EventID {
			t.Fatalf("event %s: reference hash gives %s (%v)", e.EventID, evID, err)
		}
		if err := p.VerifySignature(version, p.Sender.Homeserver(), getKey); err != nil {
			t.Fatalf("event %s: signature: %v", e.EventID, err)
		}
		if prev != nil {
			if len(p.PrevEvents) != 1 || string(p.PrevEvents[0]) != prev.EventID {
				t.Fatalf("event %s: prev_events %v, want [%s] (fork)", e.EventID, p.PrevEvents, prev.EventID)
			}
			if e.Pos <= prev.Pos || p.Depth != prev.Depth+1 {
				t.Fatalf("event %s: pos %d depth %d after pos %d depth %d", e.EventID, e.Pos, p.Depth, prev.Pos, prev.Depth)
			}
		}
		if p.Type == "m.room.message" {
			messages++
		}
		prev = &evs[i]
	}
	if room.LastEventID != prev.EventID {
		t.Fatalf("room head %s, last stored event %s", room.LastEventID, prev.EventID)
	}
	if messages < minMessages {
		t.Fatalf("%d messages stored, want at least %d", messages, minMessages)
	}
}

// TestTwoProcesses is TestTwoInstances with real `eimis-hub serve`
// processes: a message sent through process A reaches a /sync long-poll
// waiting on process B, through the shared NATS server.
func TestTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two hub processes")
	}
	const secret = "two-processes-shared-secret"
	natsURL := startNATS(t)
	common := []string{"--server-name", "hub.test", "--database", pgtest.URL(t), "--nats", natsURL,
		"--signing-key", hubtest.SigningKeyFile(t), "--registration-shared-secret", secret, "--log-level", "warn"}
	a := startProc(t, append([]string{"--data-dir", t.TempDir()}, common...), freePort(t))
	b := startProc(t, append([]string{"--data-dir", t.TempDir()}, common...), freePort(t))
	ctx := ctxT(t)

	alice := sharedSecretUser(t, a.url, secret, "alice")
	bobOnA := sharedSecretUser(t, a.url, secret, "bob")
	bob := hubtest.ClientFor(t, b.url, bobOnA) // same session, served by B

	room, first := sharedRoom(t, alice, bob)
	for i := range 3 {
		got := make(chan *mautrix.RespSync, 1)
		go func() {
			resp, err := bob.SyncRequest(ctx, 30000, first.NextBatch, "", false, "")
			if err != nil {
				t.Error(err)
			}
			got <- resp
		}()
		start := time.Now()
		sent, err := alice.SendText(ctx, room.RoomID, fmt.Sprintf("across processes %d", i))
		if err != nil {
			t.Fatal(err)
		}
		resp := <-got
		if resp == nil {
			t.FailNow()
		}
		found := false
		if jr := resp.Rooms.Join[room.RoomID]; jr != nil {
			for _, e := range jr.Timeline.Events {
				found = found || e.ID == sent.EventID
			}
		}
		if !found {
			// The poll may have started after the send and returned at
			// once with it; either way the event must be there.
			t.Fatalf("round %d: B's sync did not return the event sent on A (after %v)", i, time.Since(start))
		}
		if time.Since(start) > 25*time.Second {
			t.Fatalf("round %d: B's long-poll returned by timeout, not by a NATS wake-up", i)
		}
		first = resp
	}
}

// sharedRoom: alice creates a room, bob (served by the other instance)
// joins it, and bob's initial sync is returned for his next long-poll.
func sharedRoom(t *testing.T, alice, bob *mautrix.Client) (*mautrix.RespCreateRoom, *mautrix.RespSync) {
	t.Helper()
	ctx := ctxT(t)
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatalf("join through the other instance: %v", err)
	}
	first, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	return room, first
}

// TestNATSOutage: with the external NATS server down, sends are still
// accepted (they wait in the outbox), readiness says NATS is unavailable,
// and once NATS is back the outbox drains into the stream, each event once.
func TestNATSOutage(t *testing.T) {
	storeDir := t.TempDir()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: storeDir, NoLog: true, NoSigs: true}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	port := ns.Addr().(*net.TCPAddr).Port
	h := hubtest.Start(t, hubtest.Options{NATSURL: ns.ClientURL()})
	alice := h.NewUser(t, "alice")
	ctx := ctxT(t)
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	for i := range 5 {
		if _, err := alice.SendText(ctx, room.RoomID, fmt.Sprintf("during outage %d", i)); err != nil {
			t.Fatalf("send while NATS is down: %v", err)
		}
	}
	hubtest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(h.URL + "/_eimis/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("ready = %d while NATS is down", resp.StatusCode)
		}
		return nil
	})

	// NATS comes back on the same port with the same store.
	opts2 := *opts
	opts2.Port = port
	ns2, err := server.NewServer(&opts2)
	if err != nil {
		t.Fatal(err)
	}
	go ns2.Start()
	t.Cleanup(ns2.Shutdown)
	if !ns2.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not restart")
	}
	nc, err := nats.Connect(ns2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	hubtest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		st, err := js.Stream(ctx, bus.StreamEvents)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		// Room creation events plus the five sends, each exactly once
		// (Nats-Msg-Id de-duplicates any re-publish).
		max, err := h.Store.MaxPos(ctx)
		if err != nil {
			return err
		}
		evs, err := h.Store.RoomEvents(ctx, string(room.RoomID), 0, max, 0, store.Forward)
		if err != nil {
			return err
		}
		if info.State.Msgs != uint64(len(evs)) {
			return fmt.Errorf("stream has %d messages, room has %d events", info.State.Msgs, len(evs))
		}
		return nil
	})
	resp, err := http.Get(h.URL + "/_eimis/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ready after NATS returned = %d", resp.StatusCode)
	}
}
