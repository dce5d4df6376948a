package stateres

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json/jsontext"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

const (
	alice   = id.UserID("@alice:example.org")
	bob     = id.UserID("@bob:example.org")
	charlie = id.UserID("@charlie:example.org")
	zara    = id.UserID("@zara:example.org")
	evelyn  = id.UserID("@evelyn:example.org")
)

const (
	typeCreate = "m.room.create"
	typeMember = "m.room.member"
	typePL     = "m.room.power_levels"
	typeJR     = "m.room.join_rules"
	typeTopic  = "m.room.topic"
	typeName   = "m.room.name"
	typeMsg    = "m.room.message"
)

// testKey signs every test event: the PDUs are real, hashed and signed, and
// their IDs are the reference hashes of room versions 4 and later.
var testKey = ed25519.NewKeyFromSeed([]byte("eimis-stateres-test-signing-key!"))

// room builds a room's event DAG the way a server would: the state before an
// event is the resolution (by this package) of the states after its
// prev_events, its auth_events are chosen from that state by mautrix's auth
// events selection, and the event must pass mautrix's auth rules against
// them, or the test scenario itself is wrong.
type room struct {
	t       testing.TB
	version id.RoomVersion
	roomID  id.RoomID
	clock   int64

	events map[id.EventID]*pdu.PDU
	ids    map[string]id.EventID
	names  map[id.EventID]string
	after  map[string]StateMap
	depth  map[string]int64
	last   string

	fetches atomic.Int64 // calls to Events, for tests that expect none
}

func newRoom(t testing.TB, version id.RoomVersion) *room {
	t.Helper()
	return &room{
		t: t, version: version, clock: 1_700_000_000_000,
		events: map[id.EventID]*pdu.PDU{}, ids: map[string]id.EventID{},
		names: map[id.EventID]string{}, after: map[string]StateMap{}, depth: map[string]int64{},
	}
}

// Events makes the room its own EventFetcher.
func (r *room) Events(_ context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error) {
	r.fetches.Add(1)
	out := make(map[id.EventID]*pdu.PDU, len(ids))
	for _, e := range ids {
		if ev, ok := r.events[e]; ok {
			out[e] = ev
		}
	}
	return out, nil
}

// spec describes one event to add.
type spec struct {
	name     string
	sender   id.UserID
	typ      string
	key      *string // nil: a message
	content  string
	prev     []string // default: the last event added
	ts       int64    // default: the next tick of the room's clock
	unsigned bool     // skip the auth check (for deliberately bad input)
}

func sk(s string) *string { return &s }

// member is a membership event's content.
func member(m string) string { return fmt.Sprintf(`{"membership":%q}`, m) }

// add builds, signs and records an event and the state after it.
func (r *room) add(s spec) id.EventID {
	r.t.Helper()
	if _, dup := r.ids[s.name]; dup {
		r.t.Fatalf("event name %s used twice", s.name)
	}
	prev := s.prev
	if prev == nil && r.last != "" {
		prev = []string{r.last}
	}
	var before StateMap
	var depth int64
	switch len(prev) {
	case 0:
		before = StateMap{}
	case 1:
		before = maps.Clone(r.after[prev[0]])
	default:
		before = r.resolve(prev...)
	}
	prevIDs := make([]id.EventID, 0, len(prev))
	for _, p := range prev {
		prevIDs = append(prevIDs, r.id(p))
		depth = max(depth, r.depth[p])
	}
	ts := s.ts
	if ts == 0 {
		r.clock++
		ts = r.clock
	}
	content := s.content
	if content == "" {
		content = "{}"
	}
	p := &pdu.PDU{
		Type:           s.typ,
		StateKey:       s.key,
		Sender:         s.sender,
		Content:        jsontext.Value(content),
		OriginServerTS: ts,
		RoomID:         r.roomID,
		Depth:          depth + 1,
		PrevEvents:     prevIDs,
		AuthEvents:     []id.EventID{},
	}
	if s.typ == typeCreate && r.version.RoomIDIsCreateEventID() {
		p.RoomID = ""
	}
	authEvents := []*pdu.PDU{}
	for _, k := range p.AuthEventSelection(r.version) {
		if e, ok := before[k]; ok {
			p.AuthEvents = append(p.AuthEvents, e)
			authEvents = append(authEvents, r.events[e])
		}
	}
	if err := p.Sign(r.version, "example.org", "ed25519:test", testKey); err != nil {
		r.t.Fatalf("sign %s: %v", s.name, err)
	}
	evID, err := p.GetEventID(r.version)
	if err != nil {
		r.t.Fatalf("event ID of %s: %v", s.name, err)
	}
	if s.typ == typeCreate && r.roomID == "" {
		if r.version.RoomIDIsCreateEventID() {
			r.roomID = id.RoomID("!" + string(evID[1:]))
		} else {
			r.roomID = p.RoomID
		}
	}
	if !s.unsigned {
		if err := eventauth.Authorize(r.version, p, authEvents, r.getEvents, testGetKey); err != nil {
			r.t.Fatalf("scenario error: %s is not allowed by the state before it: %v", s.name, err)
		}
	}
	r.events[evID] = p
	r.ids[s.name] = evID
	r.names[evID] = s.name
	r.depth[s.name] = depth + 1
	after := before
	if s.key != nil {
		after[StateKey{Type: s.typ, StateKey: *s.key}] = evID
	}
	r.after[s.name] = after
	r.last = s.name
	return evID
}

func (r *room) getEvents(ids []id.EventID) ([]*pdu.PDU, error) {
	var out []*pdu.PDU
	for _, e := range ids {
		if ev, ok := r.events[e]; ok {
			out = append(out, ev)
		}
	}
	return out, nil
}

// create starts the room: creator's create event (v10 names the creator in
// content, v11 and v12 do not).
func (r *room) create(creator id.UserID, extra string) {
	r.t.Helper()
	content := fmt.Sprintf(`{"room_version":%q%s}`, r.version, extra)
	if r.version.CreatorInContent() {
		content = fmt.Sprintf(`{"creator":%q,"room_version":%q%s}`, creator, r.version, extra)
	}
	if r.version != id.RoomV12 {
		r.roomID = "!room:example.org"
	}
	r.add(spec{name: "CREATE", sender: creator, typ: typeCreate, key: sk(""), content: content, prev: []string{}})
}

// state adds a state event after the last one (or after prev).
func (r *room) state(name string, sender id.UserID, typ, key, content string, prev ...string) id.EventID {
	r.t.Helper()
	return r.add(spec{name: name, sender: sender, typ: typ, key: sk(key), content: content, prev: prev})
}

func (r *room) id(name string) id.EventID {
	r.t.Helper()
	e, ok := r.ids[name]
	if !ok {
		r.t.Fatalf("no event named %s", name)
	}
	return e
}

// resolve resolves the states after the named events.
func (r *room) resolve(names ...string) StateMap {
	r.t.Helper()
	sets := make([]StateMap, len(names))
	for i, n := range names {
		s, ok := r.after[n]
		if !ok {
			r.t.Fatalf("no event named %s", n)
		}
		sets[i] = s
	}
	got, err := Resolve(context.Background(), r.version, sets, r)
	if err != nil {
		r.t.Fatalf("resolve %v: %v", names, err)
	}
	return got
}

// stateOf is the state made of the named events, each under its own key:
// how the tests write an expected state out by hand.
func (r *room) stateOf(names ...string) StateMap {
	r.t.Helper()
	out := StateMap{}
	for _, n := range names {
		ev := r.events[r.id(n)]
		k := StateKey{Type: ev.Type, StateKey: *ev.StateKey}
		if prev, dup := out[k]; dup {
			r.t.Fatalf("expected state names %s and %s for one key", r.names[prev], n)
		}
		out[k] = r.id(n)
	}
	return out
}

// show renders a state with event names, sorted, for failure messages.
func (r *room) show(s StateMap) string {
	var parts []string
	for k, e := range s {
		name := r.names[e]
		if name == "" {
			name = string(e)
		}
		parts = append(parts, fmt.Sprintf("%s/%s=%s", strings.TrimPrefix(k.Type, "m.room."), k.StateKey, name))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, " ") + "}"
}

func (r *room) wantState(got, want StateMap) {
	r.t.Helper()
	if !maps.Equal(got, want) {
		r.t.Errorf("resolved state\n got: %s\nwant: %s", r.show(got), r.show(want))
	}
}

// baseRoom is the room most scenarios start from: alice creates it and
// holds power 100 (in v12 as the creator, outside the power levels), the
// room is public, and bob, charlie and zara have joined with power 0.
//
//	CREATE → IMA → IPOWER → IJR → IMB → IMC → IMZ
func baseRoom(t testing.TB, version id.RoomVersion) *room {
	r := newRoom(t, version)
	r.create(alice, "")
	r.state("IMA", alice, typeMember, alice.String(), member("join"))
	if version == id.RoomV12 {
		r.state("IPOWER", alice, typePL, "", `{"users":{}}`)
	} else {
		r.state("IPOWER", alice, typePL, "", `{"users":{"@alice:example.org":100}}`)
	}
	r.state("IJR", alice, typeJR, "", `{"join_rule":"public"}`)
	r.state("IMB", bob, typeMember, bob.String(), member("join"))
	r.state("IMC", charlie, typeMember, charlie.String(), member("join"))
	r.state("IMZ", zara, typeMember, zara.String(), member("join"))
	return r
}

// baseNames is baseRoom's state, by event name.
var baseNames = []string{"CREATE", "IMA", "IPOWER", "IJR", "IMB", "IMC", "IMZ"}

// with returns baseNames with the events of the same keys replaced by, or
// extended with, the given names.
func (r *room) with(base []string, names ...string) []string {
	r.t.Helper()
	keyOf := func(n string) StateKey {
		ev := r.events[r.id(n)]
		return StateKey{Type: ev.Type, StateKey: *ev.StateKey}
	}
	out := slices.Clone(base)
	for _, n := range names {
		replaced := false
		for i, b := range out {
			if keyOf(b) == keyOf(n) {
				out[i] = n
				replaced = true
			}
		}
		if !replaced {
			out = append(out, n)
		}
	}
	return out
}

// testGetKey knows the one test server's key.
func testGetKey(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
	if server == "example.org" && keyID == "ed25519:test" {
		return id.SigningKey(base64.RawStdEncoding.EncodeToString(testKey.Public().(ed25519.PublicKey))), time.Now().Add(time.Hour), nil
	}
	return "", time.Time{}, nil
}

var _ EventFetcher = (*room)(nil)
