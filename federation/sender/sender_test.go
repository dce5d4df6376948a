package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const (
	remote1 = "remote1.test"
	remote2 = "127.0.0.1:8448" // an IP literal with a port is a server name too
	remote3 = "remote3.test"
	remote4 = "remote4.test"
	evil    = "evil.test"
)

func user(local, server string) string { return "@" + local + ":" + server }

// Only local events leave, and only for servers with a member joined at
// the event (plus an invitee's server for its invite); never this server,
// never an unlisted server.
func TestDestinations(t *testing.T) {
	e := newEnv(t, []string{remote1, remote2, remote3, remote4}, nil)
	e.room("!r:"+self, map[string]string{
		user("a", self):    "join",
		user("b", remote1): "join",
		user("c", remote2): "invite", // invited, not joined: not a destination
		user("d", remote3): "leave",
		user("x", evil):    "join", // joined, but not in the federation list
	})
	room := "!r:" + self
	msgs := e.send(room, user("a", self), "msg", 3)
	// An event from elsewhere is its origin's to send.
	e.write(e.event(room, "$remote-origin", user("b", remote1), "m.room.message", nil))
	inv := e.event(room, "$invite-remote4", user("a", self), "m.room.member", new(user("e", remote4)))
	inv.Membership = "invite"
	e.write(inv)
	last := e.send(room, user("a", self), "last", 1)

	want := append(append(slices.Clone(msgs), "$invite-remote4"), last...)
	// The member events written by room() from local users also went out:
	// only those after remote1's join are in its view, so compare the tail.
	waitFor(t, "remote1 gets the messages", func() error {
		got, _ := e.remote.received(remote1)
		if len(got) < len(want) || !slices.Equal(got[len(got)-len(want):], want) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	got, _ := e.remote.received(remote1)
	if slices.Contains(got, "$remote-origin") {
		t.Errorf("an event from %s was sent back: %v", remote1, got)
	}
	waitFor(t, "remote4 gets its invite", func() error {
		got, _ := e.remote.received(remote4)
		if !slices.Equal(got, []string{"$invite-remote4"}) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	for _, d := range []string{remote2, remote3, evil, self} {
		if n := len(e.remote.attempts(d)); n != 0 {
			t.Errorf("%s was called %d times", d, n)
		}
		if _, ok := e.status(d); ok {
			t.Errorf("%s has a queue", d)
		}
	}
	if e.metrics.drops(DropUnlisted) == 0 {
		t.Error("the unlisted joined server was not counted as dropped")
	}
	if len(e.remote.violated) != 0 {
		t.Errorf("unlisted servers called: %v", e.remote.violated)
	}
}

// A destination that is down gets everything once when it comes back, in
// order, and the retries of one transaction keep its ID.
func TestDownThenUp(t *testing.T) {
	e := newEnv(t, []string{remote1}, nil)
	room := "!r:" + self
	e.remote.setDown(remote1, true)
	e.room(room, map[string]string{user("a", self): "join", user("b", remote1): "join"})
	ids := e.send(room, user("a", self), "m", 120)
	waitFor(t, "remote1 marked down after retries", func() error {
		st, ok := e.status(remote1)
		if !ok || st.Up || st.Failures < 3 || st.LastError == "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	waitFor(t, "gauges show the outage", func() error {
		g := e.sender.Gauges(context.Background())
		if g.Destinations != 1 || g.Down != 1 || g.QueueDepth != 120 {
			return fmt.Errorf("gauges %+v", g)
		}
		return nil
	})
	before := e.remote.attempts(remote1)
	for _, a := range before[1:] {
		if a.id != before[0].id || !slices.Equal(a.pdus, before[0].pdus) {
			t.Fatalf("retry changed the transaction: %s %v, then %s %v", before[0].id, before[0].pdus, a.id, a.pdus)
		}
	}
	e.remote.setDown(remote1, false)
	e.sender.Wake(remote1)
	e.waitReceived(remote1, ids)
	st, _ := e.status(remote1)
	if !st.Up || st.Failures != 0 || st.LastSuccess.IsZero() || st.QueueDepth != 0 {
		t.Errorf("after recovery: %+v", st)
	}
	if g := e.sender.Gauges(context.Background()); g.Down != 0 || g.QueueDepth != 0 || g.Lag != 0 {
		t.Errorf("gauges after recovery %+v", g)
	}
	for _, a := range e.remote.attempts(remote1) {
		if len(a.pdus) > MaxPDUsPerTxn {
			t.Errorf("transaction %s has %d PDUs", a.id, len(a.pdus))
		}
	}
}

// A response lost after the remote accepted: the retry carries the same
// ID, the remote ignores it, nothing arrives twice.
func TestLostResponseRetriedWithSameID(t *testing.T) {
	e := newEnv(t, []string{remote1}, nil)
	room := "!r:" + self
	e.room(room, map[string]string{user("a", self): "join", user("b", remote1): "join"})
	e.remote.mu.Lock()
	e.remote.lose[remote1] = 2
	e.remote.mu.Unlock()
	ids := e.send(room, user("a", self), "m", 1)
	e.waitReceived(remote1, ids)
	var tries []txn
	for _, a := range e.remote.attempts(remote1) {
		if slices.Contains(a.pdus, ids[0]) {
			tries = append(tries, a)
		}
	}
	if len(tries) != 3 || tries[0].id != tries[1].id || tries[1].id != tries[2].id || !tries[0].accepted || tries[1].accepted {
		t.Fatalf("attempts carrying %s: %+v", ids[0], tries)
	}
}

// One destination hanging never delays another.
func TestHungDestinationDoesNotDelayOthers(t *testing.T) {
	e := newEnv(t, []string{remote1, remote2}, nil)
	room := "!r:" + self
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	e.remote.mu.Lock()
	e.remote.hang[remote1] = release
	e.remote.entered[remote1] = entered
	e.remote.mu.Unlock()
	e.room(room, map[string]string{user("a", self): "join", user("b", remote1): "join", user("c", remote2): "join"})
	ids := e.send(room, user("a", self), "first", 1)
	<-entered // remote1 is stuck in its first transaction
	ids = append(ids, e.send(room, user("a", self), "m", 80)...)
	e.waitReceived(remote2, ids)
	if got, _ := e.remote.received(remote1); len(got) != 0 {
		t.Fatalf("remote1 should still be stuck, got %v", got)
	}
	e.remote.mu.Lock()
	delete(e.remote.hang, remote1)
	e.remote.mu.Unlock()
	close(release)
	e.waitReceived(remote1, ids)
}

// The sender and NATS stop while a destination is down with a queue: after
// the restart everything arrives once, and the transaction that was in
// flight is sent again with its ID and content.
func TestRestartMidQueue(t *testing.T) {
	e := newEnv(t, []string{remote1}, nil)
	room := "!r:" + self
	e.remote.setDown(remote1, true)
	e.room(room, map[string]string{user("a", self): "join", user("b", remote1): "join"})
	ids := e.send(room, user("a", self), "m", 70)
	waitFor(t, "the queue holds everything", func() error {
		if n := e.depth(remote1); n != 70 {
			return fmt.Errorf("depth %d", n)
		}
		if len(e.remote.attempts(remote1)) < 2 {
			return errors.New("no retry yet")
		}
		return nil
	})
	inflight := e.remote.attempts(remote1)[0]
	e.restart()
	// Up again, but the first attempt after the restart is refused once
	// more: it must still be the same transaction.
	e.remote.mu.Lock()
	e.remote.lose[remote1] = 1
	e.remote.down[remote1] = false
	e.remote.mu.Unlock()
	e.waitReceived(remote1, ids)
	var after []txn
	for _, a := range e.remote.attempts(remote1) {
		if a.accepted || len(after) > 0 {
			after = append(after, a)
		}
	}
	if after[0].id != inflight.id || !slices.Equal(after[0].pdus, inflight.pdus) {
		t.Errorf("first transaction after restart %s %v, in flight before %s %v", after[0].id, after[0].pdus, inflight.id, inflight.pdus)
	}
	if after[1].id != after[0].id || after[1].accepted {
		t.Errorf("the retry of a lost response: %+v then %+v", after[0], after[1])
	}

	// Restarted again with an empty queue: the old record does not hold
	// anything back.
	e.restart()
	if err := e.sender.QueueEDU(context.Background(), remote1, EDU{Type: "m.typing", Content: json.RawMessage(`{"id":"t"}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "typing after restart", func() error {
		if _, edus := e.remote.received(remote1); !slices.Contains(edus, "m.typing/t") {
			return fmt.Errorf("EDUs %v", edus)
		}
		return nil
	})
	more := e.send(room, user("a", self), "more", 2)
	e.waitReceived(remote1, append(slices.Clone(ids), more...))
}

// Transactions hold at most 50 PDUs and 100 EDUs; durable EDUs arrive
// once, in order with the PDUs.
func TestBatchLimits(t *testing.T) {
	e := newEnv(t, []string{remote1}, nil)
	room := "!r:" + self
	e.remote.setDown(remote1, true)
	e.room(room, map[string]string{user("a", self): "join", user("b", remote1): "join"})
	ids := e.send(room, user("a", self), "m", 120)
	var wantEDUs []string
	for i := range 250 {
		id := fmt.Sprintf("r%03d", i)
		wantEDUs = append(wantEDUs, "m.receipt/"+id)
		if err := e.sender.QueueEDU(context.Background(), remote1, EDU{Type: "m.receipt",
			Content: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all queued", func() error {
		if n := e.depth(remote1); n != 370 {
			return fmt.Errorf("depth %d", n)
		}
		return nil
	})
	e.remote.setDown(remote1, false)
	e.sender.Wake(remote1)
	e.waitReceived(remote1, ids)
	_, edus := e.remote.received(remote1)
	if !slices.Equal(edus, wantEDUs) {
		t.Errorf("EDUs: got %d %v", len(edus), edus)
	}
	full := map[string]bool{}
	for _, a := range e.remote.attempts(remote1) {
		if len(a.pdus) > MaxPDUsPerTxn || len(a.edus) > MaxEDUsPerTxn {
			t.Errorf("transaction %s: %d PDUs, %d EDUs", a.id, len(a.pdus), len(a.edus))
		}
		if a.accepted && len(a.pdus) == MaxPDUsPerTxn {
			full["pdu"] = true
		}
		if a.accepted && len(a.edus) == MaxEDUsPerTxn {
			full["edu"] = true
		}
	}
	if !full["pdu"] || !full["edu"] {
		t.Errorf("a backlog should fill transactions to the limits: %v", full)
	}
}

// A server outside the list is never called: not when it is joined to a
// room, not for an EDU, and not once it drops out of the list with a
// queue.
func TestUnlistedNeverCalled(t *testing.T) {
	e := newEnv(t, []string{remote1}, nil)
	room := "!r:" + self
	err := e.sender.QueueEDU(context.Background(), evil, EDU{Type: "m.receipt", Content: json.RawMessage(`{}`)})
	if !errors.Is(err, ErrNotAllowed) {
		t.Errorf("QueueEDU to an unlisted server: %v", err)
	}
	if err := e.sender.QueueEDU(context.Background(), evil, EDU{Type: "m.typing"}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("typing to an unlisted server: %v", err)
	}

	// remote1 hangs in a transaction; it leaves the list meanwhile.
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	e.remote.mu.Lock()
	e.remote.hang[remote1] = release
	e.remote.entered[remote1] = entered
	e.remote.hangErr[remote1] = errDown
	e.remote.mu.Unlock()
	e.room(room, map[string]string{user("a", self): "join", user("b", remote1): "join", user("x", evil): "join"})
	e.send(room, user("a", self), "first", 1)
	<-entered
	e.send(room, user("a", self), "m", 10)
	waitFor(t, "queued", func() error {
		if n := e.depth(remote1); n < 10 {
			return fmt.Errorf("depth %d", n)
		}
		return nil
	})
	e.allow.remove(remote1)
	e.remote.mu.Lock()
	delete(e.remote.hang, remote1)
	e.remote.mu.Unlock()
	close(release)
	waitFor(t, "remote1's queue dropped", func() error {
		if n := e.depth(remote1); n != 0 {
			return fmt.Errorf("depth %d", n)
		}
		return nil
	})
	e.send(room, user("a", self), "after", 3)
	// The room's fan-out after the removal queues nothing for remote1.
	e.allow.mu.Lock()
	e.allow.servers[remote3] = true
	e.allow.mu.Unlock()
	probe := e.event(room, "$probe", user("a", self), "m.room.member", new(user("p", remote3)))
	probe.Membership = "invite"
	e.write(probe)
	e.waitReceived(remote3, []string{"$probe"})
	if n := e.depth(remote1); n != 0 {
		t.Errorf("remote1 queued after leaving the list: %d", n)
	}
	if len(e.remote.violated) != 0 || len(e.remote.attempts(evil)) != 0 {
		t.Errorf("unlisted servers called: %v", e.remote.violated)
	}
	if got := len(e.remote.attempts(remote1)); got != 1 {
		t.Errorf("remote1 called %d times, want only the one before it left the list", got)
	}
	if e.metrics.drops(DropUnlisted) < 10 {
		t.Errorf("dropped unlisted = %d", e.metrics.drops(DropUnlisted))
	}
}

// A destination back from an outage gets the event it was trying to
// deliver and then only the most recent ones (the catch-up window); the
// rest it fetches with get_missing_events.
func TestCatchUpWindow(t *testing.T) {
	e := newEnv(t, []string{remote1}, func(c *Config) { c.CatchUpWindow = 10 })
	room := "!r:" + self
	e.room(room, map[string]string{user("a", self): "join", user("b", remote1): "join"})
	warm := e.send(room, user("a", self), "warm", 1)
	e.waitReceived(remote1, warm)
	e.remote.setDown(remote1, true)
	first := e.send(room, user("a", self), "first", 1)
	waitFor(t, "in flight", func() error {
		if len(e.remote.attempts(remote1)) < 3 {
			return errors.New("not yet retried")
		}
		return nil
	})
	ids := e.send(room, user("a", self), "m", 59)
	waitFor(t, "queued", func() error {
		if n := e.depth(remote1); n != 60 {
			return fmt.Errorf("depth %d", n)
		}
		return nil
	})
	e.remote.setDown(remote1, false)
	e.sender.Wake(remote1)
	want := append(warm, first...)
	want = append(want, ids[len(ids)-10:]...)
	e.waitReceived(remote1, want)
	if n := e.metrics.drops(DropCatchUp); n != 49 {
		t.Errorf("catch-up drops = %d, want 49", n)
	}
}

// Typing goes out best-effort; it never waits behind a down destination's
// retries and is bounded.
func TestTypingBestEffort(t *testing.T) {
	e := newEnv(t, []string{remote1}, func(c *Config) { c.EphemeralMax = 5 })
	for i := range 3 {
		err := e.sender.QueueEDU(context.Background(), remote1, EDU{Type: "m.typing",
			Content: json.RawMessage(fmt.Sprintf(`{"id":"t%d"}`, i))})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "typing delivered", func() error {
		_, edus := e.remote.received(remote1)
		if len(edus) != 3 {
			return fmt.Errorf("got %v", edus)
		}
		return nil
	})
	_, edus := e.remote.received(remote1)
	for _, x := range edus {
		if !strings.HasPrefix(x, "m.typing/t") {
			t.Errorf("unexpected EDU %s", x)
		}
	}
	if n := e.depth(remote1); n != 0 {
		t.Errorf("typing went through the durable queue: depth %d", n)
	}
	w := newWorker(e.sender, remote1) // not running: nothing drains it
	for i := range 8 {
		w.pushEphemeral(entry{QueuedAt: 1 << 62, EDU: &EDU{Type: "m.typing", Content: json.RawMessage(fmt.Sprintf(`{"id":"o%d"}`, i))}})
	}
	if n := e.metrics.drops(DropEphemeralOverflow); n != 3 {
		t.Errorf("overflow drops = %d, want 3", n)
	}
	if got := w.takeEphemeral(100); len(got) != 5 || string(got[0].EDU.Content) != `{"id":"o3"}` {
		t.Errorf("kept %d, first %s", len(got), got[0].EDU.Content)
	}
}
