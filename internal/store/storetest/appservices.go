package storetest

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

var appserviceTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"AppserviceRegistrations", testAppserviceRegistrations},
	{"AppserviceLease", testAppserviceLease},
	{"AppserviceMembers", testAppserviceMembers},
	{"AppserviceQueueAndTxns", testAppserviceQueueAndTxns},
}

func appservice(id string) store.Appservice {
	return store.Appservice{
		ID: id, Registration: json.RawMessage(`{"id":"` + id + `","sender_localpart":"` + id + `bot"}`),
		ASTokenHash: bytes.Repeat([]byte(id[:1]), 32), HSToken: "hs-" + id, ResponsibleIDNat: "810000000001", StartPos: 42,
	}
}

func testAppserviceRegistrations(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "create b", s.CreateAppservice(ctx, appservice("b-bridge")))
	must(t, "create a", s.CreateAppservice(ctx, appservice("a-bridge")))
	wantErr(t, "same id", s.CreateAppservice(ctx, appservice("a-bridge")), store.ErrExists)
	sameToken := appservice("c-bridge")
	sameToken.ASTokenHash = appservice("a-bridge").ASTokenHash
	wantErr(t, "same as_token", s.CreateAppservice(ctx, sameToken), store.ErrExists)

	got, err := s.Appservices(ctx)
	must(t, "list", err)
	if len(got) != 2 || got[0].ID != "a-bridge" || got[1].ID != "b-bridge" {
		t.Fatalf("appservices = %+v, want a-bridge then b-bridge", got)
	}
	a := got[0]
	want := appservice("a-bridge")
	if !bytes.Equal(a.ASTokenHash, want.ASTokenHash) || a.HSToken != want.HSToken || a.StartPos != 42 ||
		a.ResponsibleIDNat != want.ResponsibleIDNat || string(a.Registration) != string(want.Registration) || a.CreatedAt.IsZero() {
		t.Fatalf("appservice = %+v, want %+v", a, want)
	}

	// Deleting takes the delivery state with it.
	_, err = s.EnqueueAppserviceEvent(ctx, "a-bridge", "$e1", &store.AppserviceMember{RoomID: "!r", UserID: "@x:hub", Membership: "join", Pos: 1}, time.Now())
	must(t, "enqueue", err)
	_, err = s.CreateAppserviceTxn(ctx, "a-bridge", []string{"$e1"}, json.RawMessage(`{"events":[]}`), time.Now())
	must(t, "txn", err)
	must(t, "delete", s.DeleteAppservice(ctx, "a-bridge"))
	wantErr(t, "delete again", s.DeleteAppservice(ctx, "a-bridge"), store.ErrNotFound)
	_, err = s.PendingAppserviceTxn(ctx, "a-bridge")
	wantErr(t, "txn of deleted", err, store.ErrNotFound)
	if in, err := s.AppserviceInRoom(ctx, "a-bridge", "!r"); err != nil || in {
		t.Fatalf("members of a deleted appservice: %v, %v", in, err)
	}
	_, err = s.EnqueueAppserviceEvent(ctx, "a-bridge", "$e2", nil, time.Now())
	wantErr(t, "enqueue for deleted", err, store.ErrNotFound)
	// A re-registration starts afresh.
	must(t, "re-create", s.CreateAppservice(ctx, appservice("a-bridge")))
	ids, err := s.WaitingAppserviceEvents(ctx, "a-bridge", 10)
	must(t, "waiting", err)
	if len(ids) != 0 {
		t.Fatalf("waiting after re-registration = %v", ids)
	}
}

func testAppserviceLease(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "create", s.CreateAppservice(ctx, appservice("bridge")))
	now := time.Now()
	_, err := s.ClaimAppserviceLease(ctx, "nope", "i1", now, time.Minute)
	wantErr(t, "unknown", err, store.ErrNotFound)

	claim := func(owner string, at time.Time) bool {
		t.Helper()
		ok, err := s.ClaimAppserviceLease(ctx, "bridge", owner, at, 10*time.Second)
		must(t, "claim", err)
		return ok
	}
	if !claim("i1", now) {
		t.Fatal("a free lease must be granted")
	}
	if claim("i2", now.Add(time.Second)) {
		t.Fatal("a held lease must not be granted to another instance")
	}
	if !claim("i1", now.Add(5*time.Second)) {
		t.Fatal("the holder must be able to renew")
	}
	if claim("i2", now.Add(14*time.Second)) {
		t.Fatal("the renewal must extend the lease")
	}
	if !claim("i2", now.Add(16*time.Second)) {
		t.Fatal("an expired lease must go to whoever claims it")
	}
	must(t, "release by non-holder", s.ReleaseAppserviceLease(ctx, "bridge", "i1"))
	if claim("i1", now.Add(17*time.Second)) {
		t.Fatal("only the holder can release")
	}
	must(t, "release", s.ReleaseAppserviceLease(ctx, "bridge", "i2"))
	if !claim("i1", now.Add(17*time.Second)) {
		t.Fatal("a released lease must be free")
	}

	// Racing claimants: exactly one wins.
	must(t, "release", s.ReleaseAppserviceLease(ctx, "bridge", "i1"))
	var mu sync.Mutex
	var winners []string
	var wg sync.WaitGroup
	for _, owner := range []string{"r1", "r2", "r3", "r4"} {
		wg.Go(func() {
			ok, err := s.ClaimAppserviceLease(ctx, "bridge", owner, now.Add(20*time.Second), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				winners = append(winners, owner)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("winners = %v, want exactly one", winners)
	}
}

func testAppserviceMembers(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "create", s.CreateAppservice(ctx, appservice("bridge")))
	in := func(room string) bool {
		t.Helper()
		ok, err := s.AppserviceInRoom(ctx, "bridge", room)
		must(t, "in room", err)
		return ok
	}
	put := func(room, user, membership string, pos int64) {
		t.Helper()
		must(t, "put", s.PutAppserviceMember(ctx, "bridge", store.AppserviceMember{RoomID: room, UserID: user, Membership: membership, Pos: pos}))
	}
	if in("!a") {
		t.Fatal("no member yet")
	}
	put("!a", "@g1:hub", "invite", 10)
	if !in("!a") {
		t.Fatal("an invited user makes the room relevant")
	}
	put("!a", "@g1:hub", "leave", 20)
	if in("!a") {
		t.Fatal("after the leave the room is no longer relevant")
	}
	put("!a", "@g1:hub", "join", 15) // a redelivered older event
	if in("!a") {
		t.Fatal("an older membership must not overwrite a newer one")
	}
	put("!a", "@g2:hub", "join", 21)
	put("!b", "@g1:hub", "ban", 22)
	if !in("!a") || in("!b") {
		t.Fatal("rooms are independent; ban is not membership")
	}
	wantErr(t, "unknown appservice", s.PutAppserviceMember(ctx, "nope", store.AppserviceMember{RoomID: "!a", UserID: "@g:hub", Membership: "join", Pos: 1}), store.ErrNotFound)
}

func testAppserviceQueueAndTxns(t *testing.T, s store.Store) {
	ctx := t.Context()
	must(t, "create", s.CreateAppservice(ctx, appservice("bridge")))
	must(t, "create other", s.CreateAppservice(ctx, appservice("other")))
	t0 := time.Now()
	enqueue := func(asID, eventID string, m *store.AppserviceMember) bool {
		t.Helper()
		added, err := s.EnqueueAppserviceEvent(ctx, asID, eventID, m, t0)
		must(t, "enqueue "+eventID, err)
		return added
	}
	for _, e := range []string{"$3", "$1", "$2"} {
		if !enqueue("bridge", e, nil) {
			t.Fatalf("%s not added", e)
		}
	}
	// A redelivered event is recognised, and its member update ignored.
	if enqueue("bridge", "$1", &store.AppserviceMember{RoomID: "!r", UserID: "@g:hub", Membership: "join", Pos: 5}) {
		t.Fatal("a queued event must not be queued twice")
	}
	if in, _ := s.AppserviceInRoom(ctx, "bridge", "!r"); in {
		t.Fatal("the member update of a duplicate must not apply")
	}
	if !enqueue("bridge", "$4", &store.AppserviceMember{RoomID: "!r", UserID: "@g:hub", Membership: "join", Pos: 6}) {
		t.Fatal("$4 not added")
	}
	if in, _ := s.AppserviceInRoom(ctx, "bridge", "!r"); !in {
		t.Fatal("the member update must commit with the event")
	}
	enqueue("other", "$1", nil) // queues are per appservice

	_, err := s.PendingAppserviceTxn(ctx, "bridge")
	wantErr(t, "no txn yet", err, store.ErrNotFound)
	waiting, err := s.WaitingAppserviceEvents(ctx, "bridge", 2)
	must(t, "waiting", err)
	if !slices.Equal(waiting, []string{"$3", "$1"}) {
		t.Fatalf("waiting = %v, want queue order [$3 $1]", waiting)
	}
	body := json.RawMessage(`{"events":[{"event_id":"$3"},{"event_id":"$1"}]}`)
	id1, err := s.CreateAppserviceTxn(ctx, "bridge", waiting, body, t0)
	must(t, "txn 1", err)
	waiting, err = s.WaitingAppserviceEvents(ctx, "bridge", 10)
	must(t, "waiting", err)
	if !slices.Equal(waiting, []string{"$2", "$4"}) {
		t.Fatalf("waiting after txn = %v, want [$2 $4]", waiting)
	}
	id2, err := s.CreateAppserviceTxn(ctx, "bridge", waiting, json.RawMessage(`{"events":[2]}`), t0)
	must(t, "txn 2", err)
	if id2 <= id1 {
		t.Fatalf("txn ids %d then %d must increase", id1, id2)
	}
	p, err := s.PendingAppserviceTxn(ctx, "bridge")
	must(t, "pending", err)
	if p.ID != id1 || string(p.Body) != string(body) {
		t.Fatalf("pending = %d %s, want the oldest (%d) with its body", p.ID, p.Body, id1)
	}
	must(t, "complete", s.CompleteAppserviceTxn(ctx, "bridge", id1))
	if p, err = s.PendingAppserviceTxn(ctx, "bridge"); err != nil || p.ID != id2 {
		t.Fatalf("pending after completing the first = %+v, %v", p, err)
	}
	must(t, "complete", s.CompleteAppserviceTxn(ctx, "bridge", id2))
	_, err = s.PendingAppserviceTxn(ctx, "bridge")
	wantErr(t, "all done", err, store.ErrNotFound)

	// Sent events stay recognised until pruned; waiting ones are never pruned.
	enqueue("bridge", "$5", nil)
	if enqueue("bridge", "$2", nil) {
		t.Fatal("a sent event must still be recognised before pruning")
	}
	n, err := s.PruneAppserviceQueue(ctx, "bridge", t0.Add(time.Second))
	must(t, "prune", err)
	if n != 4 {
		t.Fatalf("pruned %d, want the 4 sent events", n)
	}
	if waiting, _ = s.WaitingAppserviceEvents(ctx, "bridge", 10); !slices.Equal(waiting, []string{"$5"}) {
		t.Fatalf("waiting after prune = %v, want [$5]", waiting)
	}
	if waiting, _ = s.WaitingAppserviceEvents(ctx, "other", 10); !slices.Equal(waiting, []string{"$1"}) {
		t.Fatalf("other appservice's queue = %v, want untouched [$1]", waiting)
	}

	// Transaction IDs are never reused, even for a fresh queue.
	id3, err := s.CreateAppserviceTxn(ctx, "bridge", []string{"$5"}, json.RawMessage(`{}`), t0)
	must(t, "txn 3", err)
	if id3 <= id2 {
		t.Fatalf("txn id %d reused (last was %d)", id3, id2)
	}
	_, err = s.CreateAppserviceTxn(ctx, "nope", nil, json.RawMessage(`{}`), t0)
	wantErr(t, "txn for unknown", err, store.ErrNotFound)
}
