package stateres

import (
	"context"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// TestTrivialInputs: no conflict means no work. A single state set, or
// several identical ones, resolve to themselves without one fetch; no set
// at all resolves to the empty state.
func TestTrivialInputs(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			r := baseRoom(t, v)
			s := r.after["IMZ"]
			for _, sets := range [][]StateMap{{s}, {s, maps.Clone(s)}, {s, s, s}} {
				got, err := Resolve(context.Background(), v, sets, r)
				if err != nil {
					t.Fatal(err)
				}
				r.wantState(got, r.stateOf(baseNames...))
			}
			if n := r.fetches.Load(); n != 0 {
				t.Errorf("trivial resolutions fetched %d times", n)
			}
			got, err := Resolve(context.Background(), v, nil, r)
			if err != nil || len(got) != 0 {
				t.Errorf("no sets: got %v, %v; want the empty state", got, err)
			}
		})
	}
}

// TestLongAuthChains: alice changes the power levels 400 times and bob his
// display name 400 times on one side; on the other alice sets a topic.
//
// The auth difference holds all 800 events. Step 1 applies IPOWER and the
// 400 power levels along their chain: P400 holds. Step 3 orders the rest on
// the mainline P400 → … → P1 → IPOWER: IMB and TB cite IPOWER (position
// 400, the oldest) and go first, by timestamp; bob's changes cite P400
// (position 0) and follow in timestamp order. All are allowed: P400, B400
// and TB hold.
//
// The fetcher sees each event once, in batches no larger than fetchBatch.
func TestLongAuthChains(t *testing.T) {
	const n = 400
	for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			r := baseRoom(t, v)
			for i := 1; i <= n; i++ {
				content := fmt.Sprintf(`{"users":{"@alice:example.org":100},"events":{"org.example.counter":%d}}`, i%97)
				if v == id.RoomV12 {
					content = fmt.Sprintf(`{"users":{},"events":{"org.example.counter":%d}}`, i%97)
				}
				r.state(fmt.Sprintf("P%d", i), alice, typePL, "", content)
			}
			for i := 1; i <= n; i++ {
				r.state(fmt.Sprintf("B%d", i), bob, typeMember, bob.String(), fmt.Sprintf(`{"membership":"join","displayname":"Bob %d"}`, i))
			}
			r.state("TB", alice, typeTopic, "", `{"topic":"short side"}`, "IMZ")

			f := &countingFetcher{inner: r, seen: map[id.EventID]int{}}
			got, err := Resolve(context.Background(), v, []StateMap{r.after[fmt.Sprintf("B%d", n)], r.after["TB"]}, f)
			if err != nil {
				t.Fatal(err)
			}
			r.wantState(got, r.stateOf(r.with(baseNames, fmt.Sprintf("P%d", n), fmt.Sprintf("B%d", n), "TB")...))
			for e, times := range f.seen {
				if times != 1 {
					t.Errorf("%s fetched %d times", r.names[e], times)
				}
			}
			if f.maxBatch > fetchBatch {
				t.Errorf("a batch of %d IDs, more than %d", f.maxBatch, fetchBatch)
			}
			if len(f.seen) < 2*n {
				t.Errorf("only %d events fetched; the chains have %d", len(f.seen), 2*n)
			}
		})
	}
}

type countingFetcher struct {
	inner    EventFetcher
	mu       sync.Mutex
	seen     map[id.EventID]int
	maxBatch int
}

func (f *countingFetcher) Events(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error) {
	f.mu.Lock()
	f.maxBatch = max(f.maxBatch, len(ids))
	for _, e := range ids {
		f.seen[e]++
	}
	f.mu.Unlock()
	return f.inner.Events(ctx, ids)
}

// TestConflictedSubgraph: the second change of v2.1. P1 gives bob 100; bob
// changes the power levels twice (PB, then PB2; both cite his join IMB).
// Then evelyn joins (JE, citing PB2) on one side while bob changes his
// display name (JB2, citing PB2 and IMB) on the other.
//
// Conflicted: bob {IMB, JB2} and evelyn {JE}. The auth difference is {JE,
// JB2}: PB and PB2 are in both auth chains. But they lie on the path JE →
// PB2 → PB → IMB between two conflicted events, so in v12 the conflicted
// state subgraph adds them to the full conflicted set, and v11 leaves them
// out. The resolved state is the same either way here (bob JB2, evelyn JE,
// power levels PB2).
func TestConflictedSubgraph(t *testing.T) {
	for _, tc := range []struct {
		version id.RoomVersion
		p1, pb  string
		pb2     string
		wantPB  bool
	}{
		{id.RoomV11, `{"users":{"@alice:example.org":100,"@bob:example.org":100}}`,
			`{"users":{"@alice:example.org":100,"@bob:example.org":100,"@charlie:example.org":50}}`,
			`{"users":{"@alice:example.org":100,"@bob:example.org":100,"@charlie:example.org":60}}`, false},
		{id.RoomV12, `{"users":{"@bob:example.org":100}}`,
			`{"users":{"@bob:example.org":100,"@charlie:example.org":50}}`,
			`{"users":{"@bob:example.org":100,"@charlie:example.org":60}}`, true},
	} {
		t.Run("v"+string(tc.version), func(t *testing.T) {
			r := baseRoom(t, tc.version)
			r.state("P1", alice, typePL, "", tc.p1)
			r.state("PB", bob, typePL, "", tc.pb)
			r.state("PB2", bob, typePL, "", tc.pb2)
			r.state("JE", evelyn, typeMember, evelyn.String(), member("join"))
			r.state("JB2", bob, typeMember, bob.String(), `{"membership":"join","displayname":"Bob"}`, "PB2")
			sets := []StateMap{r.after["JE"], r.after["JB2"]}

			res := Resolver{Fetcher: r}
			run, err := res.start(context.Background(), tc.version)
			if err != nil {
				t.Fatal(err)
			}
			unconflicted, conflicted := partition(sets)
			full, _, err := run.fullConflictedSet(sets, unconflicted, conflicted)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for i, in := range full {
				if in {
					names = append(names, r.names[run.g.nodes[i].id])
				}
			}
			slices.Sort(names)
			want := []string{"IMB", "JB2", "JE"}
			if tc.wantPB {
				want = []string{"IMB", "JB2", "JE", "PB", "PB2"}
			}
			if !slices.Equal(names, want) {
				t.Errorf("full conflicted set %v, want %v", names, want)
			}
			r.wantState(r.resolve("JE", "JB2"), r.stateOf(r.with(baseNames, "PB2", "JB2", "JE")...))
		})
	}
}

// TestRestrictedJoinNeedsKeys: evelyn joins a restricted room through
// alice (join_authorised_via_users_server) while alice sets a topic on the
// other side. Re-checking the join verifies example.org's signature (rule
// 5.2.1): without a key source Resolve fails rather than refusing a valid
// join; with one, evelyn is a member.
func TestRestrictedJoinNeedsKeys(t *testing.T) {
	r := baseRoom(t, id.RoomV11)
	r.state("JR", alice, typeJR, "", `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!other:example.org"}]}`)
	r.state("JE", evelyn, typeMember, evelyn.String(), `{"membership":"join","join_authorised_via_users_server":"@alice:example.org"}`)
	r.state("T", alice, typeTopic, "", `{"topic":"t"}`, "JR")
	sets := []StateMap{r.after["JE"], r.after["T"]}

	_, err := Resolve(context.Background(), id.RoomV11, sets, r)
	if !errors.Is(err, ErrNoKeySource) {
		t.Fatalf("without keys: %v, want ErrNoKeySource", err)
	}
	res := Resolver{Fetcher: r, GetKey: testGetKey}
	got, err := res.Resolve(context.Background(), id.RoomV11, sets)
	if err != nil {
		t.Fatal(err)
	}
	r.wantState(got, r.stateOf(r.with(baseNames, "JR", "JE", "T")...))
}

// TestBadInput: every broken input is an error naming its cause, never a
// hang, a panic or a silently wrong state.
func TestBadInput(t *testing.T) {
	r := baseRoom(t, id.RoomV11)
	r.state("TA", alice, typeTopic, "", `{"topic":"a"}`)
	r.state("TB", alice, typeTopic, "", `{"topic":"b"}`, "IMZ")
	good := []StateMap{r.after["TA"], r.after["TB"]}
	topic := StateKey{Type: typeTopic}

	// A forged pair of events citing each other, and one citing itself.
	// IDs are whatever the fetcher says: nothing here can be a real hash.
	forged := func(evID id.EventID, auth ...id.EventID) *pdu.PDU {
		return &pdu.PDU{Type: typeTopic, StateKey: sk(""), Sender: alice, RoomID: r.roomID,
			Content: jsontext.Value(`{}`), AuthEvents: auth, PrevEvents: []id.EventID{r.id("IMZ")}}
	}
	cyclic := FetcherFunc(func(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error) {
		out, _ := r.Events(ctx, ids)
		for _, e := range ids {
			switch e {
			case "$a":
				out[e] = forged(e, r.id("IPOWER"), "$b")
			case "$b":
				out[e] = forged(e, "$a")
			case "$self":
				out[e] = forged(e, "$self")
			}
		}
		return out, nil
	})
	withTopic := func(e id.EventID) StateMap {
		s := maps.Clone(r.after["IMZ"])
		s[topic] = e
		return s
	}
	rejecting := FetcherFunc(func(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error) {
		out, _ := r.Events(ctx, ids)
		if ev, ok := out[r.id("TA")]; ok {
			c := *ev
			c.InternalMeta.Rejected = true
			out[r.id("TA")] = &c
		}
		return out, nil
	})
	failing := FetcherFunc(func(context.Context, []id.EventID) (map[id.EventID]*pdu.PDU, error) {
		return nil, errors.New("database down")
	})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	misfiled := withTopic(r.id("IMB"))

	cases := []struct {
		name    string
		ctx     context.Context
		version id.RoomVersion
		sets    []StateMap
		res     Resolver
		want    error
	}{
		{"unsupported room version", nil, id.RoomV9, good, Resolver{Fetcher: r}, ErrUnsupportedRoomVersion},
		{"auth cycle", nil, id.RoomV11, []StateMap{withTopic("$a"), r.after["TB"]}, Resolver{Fetcher: cyclic}, ErrAuthCycle},
		{"event citing itself", nil, id.RoomV11, []StateMap{withTopic("$self"), r.after["TB"]}, Resolver{Fetcher: cyclic}, ErrAuthCycle},
		{"unknown event", nil, id.RoomV11, []StateMap{withTopic("$unknown"), r.after["TB"]}, Resolver{Fetcher: r}, &MissingEventsError{}},
		{"graph over the bound", nil, id.RoomV11, good, Resolver{Fetcher: r, MaxEvents: 5}, ErrTooManyEvents},
		{"rejected event in a state set", nil, id.RoomV11, good, Resolver{Fetcher: rejecting}, ErrRejectedInState},
		{"entry under another key", nil, id.RoomV11, []StateMap{misfiled, r.after["TB"]}, Resolver{Fetcher: r}, ErrBadStateEntry},
		{"fetcher failure", nil, id.RoomV11, good, Resolver{Fetcher: failing}, nil},
		{"cancelled", cancelled, id.RoomV11, good, Resolver{Fetcher: r}, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			got, err := tc.res.Resolve(ctx, tc.version, tc.sets)
			if err == nil {
				t.Fatalf("no error; resolved %s", r.show(got))
			}
			var missing *MissingEventsError
			switch {
			case tc.want == nil:
			case errors.As(tc.want, &missing):
				if !errors.As(err, &missing) || missing.N != 1 || missing.IDs[0] != "$unknown" {
					t.Errorf("error %v, want a MissingEventsError for $unknown", err)
				}
			case !errors.Is(err, tc.want):
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSenderPower: the power level the reverse topological power ordering
// reads, from each event's own auth events.
func TestSenderPower(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			r := baseRoom(t, v)
			users := `"@bob:example.org":40`
			if v != id.RoomV12 {
				users = `"@alice:example.org":100,` + users
			}
			r.state("P1", alice, typePL, "", fmt.Sprintf(`{"users_default":20,"users":{%s}}`, users))
			r.state("MC", charlie, typeMember, charlie.String(), `{"membership":"join","displayname":"c"}`)
			r.state("JB", bob, typeMember, bob.String(), `{"membership":"join","displayname":"b"}`)
			r.state("PA", alice, typePL, "", fmt.Sprintf(`{"users_default":20,"users":{%s}}`, users))

			res := Resolver{Fetcher: r}
			run, err := res.start(context.Background(), v)
			if err != nil {
				t.Fatal(err)
			}
			sets := []StateMap{r.after["PA"], r.after["IMZ"]}
			unconflicted, conflicted := partition(sets)
			if _, _, err := run.fullConflictedSet(sets, unconflicted, conflicted); err != nil {
				t.Fatal(err)
			}
			creator := int64(100) // no power levels yet: the creator has 100
			if v == id.RoomV12 {
				creator = creatorPower // creators outrank any level, always
			}
			alicePL := int64(100)
			if v == id.RoomV12 {
				alicePL = creatorPower
			}
			for _, tc := range []struct {
				name string
				want int64
			}{
				{"IMA", creator},    // cites only the create event (not even that in v12)
				{"IPOWER", creator}, // cites no power levels event either
				{"IMB", 0},          // IPOWER does not name bob, users_default is 0
				{"MC", 20},          // P1: charlie is not named, users_default 20
				{"JB", 40},          // P1 names bob at 40
				{"PA", alicePL},     // P1 names alice at 100 (v12: creator)
			} {
				if got := run.senderPower(run.g.index[r.id(tc.name)]); got != tc.want {
					t.Errorf("power of %s's sender = %d, want %d", tc.name, got, tc.want)
				}
			}
		})
	}
}

// TestV12ForeignCreate: in room version 12 the room ID names the create
// event, so a state set holding another create event is refused, not
// resolved.
func TestV12ForeignCreate(t *testing.T) {
	r := baseRoom(t, id.RoomV12)
	other := newRoom(t, id.RoomV12)
	other.create(bob, "")
	for e, ev := range other.events {
		r.events[e] = ev
	}
	r.state("T", alice, typeTopic, "", `{"topic":"t"}`)
	s2 := maps.Clone(r.after["T"])
	s2[StateKey{Type: typeCreate}] = other.id("CREATE")
	_, err := Resolve(context.Background(), id.RoomV12, []StateMap{r.after["IMZ"], s2}, r)
	if !errors.Is(err, ErrRoomMismatch) {
		t.Fatalf("error %v, want ErrRoomMismatch", err)
	}
}

// TestRejectedAuthEventNotUsed: the room is invite-only (JRI). On one side
// alice invites evelyn (INV) and evelyn joins (JE); on the other alice sets
// a topic (T). INV and JE are only in the first side's auth chains, so both
// are in the full conflicted set, ordered INV then JE.
//
// Normally INV is applied, and JE is allowed against it. If the store
// marks INV rejected, the spec excludes it twice: it is not admitted, and
// it does not stand in as JE's auth event for evelyn's membership, so JE,
// an uninvited join to an invite-only room, is refused.
func TestRejectedAuthEventNotUsed(t *testing.T) {
	r := baseRoom(t, id.RoomV11)
	r.state("JRI", alice, typeJR, "", `{"join_rule":"invite"}`)
	r.state("INV", alice, typeMember, evelyn.String(), member("invite"))
	r.state("JE", evelyn, typeMember, evelyn.String(), member("join"))
	r.state("T", alice, typeTopic, "", `{"topic":"t"}`, "JRI")
	sets := []StateMap{r.after["JE"], r.after["T"]}

	r.wantState(r.resolve("JE", "T"), r.stateOf(r.with(baseNames, "JRI", "JE", "T")...))

	inv := r.id("INV")
	rejecting := FetcherFunc(func(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error) {
		out, _ := r.Events(ctx, ids)
		if ev, ok := out[inv]; ok {
			c := *ev
			c.InternalMeta.Rejected = true
			out[inv] = &c
		}
		return out, nil
	})
	got, err := Resolve(context.Background(), id.RoomV11, sets, rejecting)
	if err != nil {
		t.Fatal(err)
	}
	r.wantState(got, r.stateOf(r.with(baseNames, "JRI", "T")...))
}
