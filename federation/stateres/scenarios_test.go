package stateres

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestForkedRooms: two writers extend the same room from an old extremity,
// then a merge resolves their states. Each expected state is written out by
// hand, with the reasoning of the algorithm in the comment.
func TestForkedRooms(t *testing.T) {
	// pl gives alice 100 (outside the power levels in v12, where she is the
	// creator) and the listed users their levels.
	pl := func(version id.RoomVersion, extra string) string {
		if version == id.RoomV12 {
			return fmt.Sprintf(`{"users":{%s}}`, extra)
		}
		return fmt.Sprintf(`{"users":{"@alice:example.org":100,%s}}`, extra)
	}
	cases := []struct {
		name     string
		versions []id.RoomVersion
		build    func(r *room, v id.RoomVersion) (merge []string, want []string)
	}{
		{
			// Alice bans bob (MB) while bob, on the other side, sends a
			// message and then changes his display name (MB2, a join with
			// new content). Bob's member key is conflicted {MB, MB2}.
			//
			// The ban is a power event (sender ≠ state key), applied in step
			// 1 against bob's own auth event (joined): allowed. MB2 is not a
			// power event; in step 4 it is checked against the partial state,
			// where bob is banned: rule 5.3.3 refuses it. Bob stays banned;
			// his message changes no state.
			name:     "ban racing a message",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12},
			build: func(r *room, _ id.RoomVersion) ([]string, []string) {
				r.state("MB", alice, typeMember, bob.String(), member("ban"))
				r.add(spec{name: "MSG", sender: bob, typ: typeMsg, content: `{"body":"hello"}`, prev: []string{"IMZ"}})
				r.state("MB2", bob, typeMember, bob.String(), `{"membership":"join","displayname":"Bob"}`)
				return []string{"MB", "MB2"}, r.with(baseNames, "MB")
			},
		},
		{
			// Power levels changed on both sides, and the higher power's
			// change takes away the lower one's power. Alice gave bob 50
			// (P1). Then alice demotes bob (PA) while bob gives charlie 50
			// (PB).
			//
			// Both cite P1. Ordered by sender power: PA (alice 100) first,
			// then PB (bob 50). PA is allowed; PB, checked against PA where
			// bob is back at 0, may not raise charlie to 50. PA holds.
			name:     "power levels on both sides, the demotion wins",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":50`))
				r.state("PA", alice, typePL, "", pl(v, `"@bob:example.org":0`))
				r.state("PB", bob, typePL, "", pl(v, `"@bob:example.org":50,"@charlie:example.org":50`), "P1")
				return []string{"PA", "PB"}, r.with(baseNames, "PA")
			},
		},
		{
			// Power levels changed on both sides, compatibly. After P1 (bob
			// 50), alice lowers state_default to 40 (PA) while bob gives
			// charlie 50 (PB).
			//
			// Same order as above, PA then PB; but now PB is allowed against
			// PA: bob is still at 50, resetting state_default from 40 to its
			// default 50 changes a value no higher than his level, and
			// charlie's new 50 is not above it. Applied last, PB holds — and
			// alice's state_default change is lost. That is the algorithm:
			// the more powerful sender goes first, not last.
			name:     "power levels on both sides, the later allowed change wins",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":50`))
				r.state("PA", alice, typePL, "", fmt.Sprintf(`{"state_default":40,%s`, pl(v, `"@bob:example.org":50`)[1:]))
				r.state("PB", bob, typePL, "", pl(v, `"@bob:example.org":50,"@charlie:example.org":50`), "P1")
				return []string{"PA", "PB"}, r.with(baseNames, "PA", "PB")
			},
		},
		{
			// Power levels changed on both sides at equal power. P1 puts bob
			// at 100 beside alice. Alice gives charlie 10 (PA); later, bob
			// gives zara 10 (PB).
			//
			// Same power (100 each), so origin_server_ts orders them: PA,
			// then PB. PB is allowed against PA (removing charlie's 10 is
			// below bob's 100), so the later one, PB, holds.
			name:     "power levels on both sides at equal power, by timestamp",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":100`))
				r.state("PA", alice, typePL, "", pl(v, `"@bob:example.org":100,"@charlie:example.org":10`))
				r.state("PB", bob, typePL, "", pl(v, `"@bob:example.org":100,"@zara:example.org":10`), "P1")
				return []string{"PA", "PB"}, r.with(baseNames, "PB")
			},
		},
		{
			// The same, with the timestamps the other way round: bob's PB is
			// older than alice's PA. PB is applied first, then PA, allowed
			// against PB (removing zara's 10 is below alice's 100): PA holds.
			name:     "power levels on both sides at equal power, by timestamp reversed",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":100`))
				r.state("PB", bob, typePL, "", pl(v, `"@bob:example.org":100,"@zara:example.org":10`))
				r.state("PA", alice, typePL, "", pl(v, `"@bob:example.org":100,"@charlie:example.org":10`), "P1")
				return []string{"PA", "PB"}, r.with(baseNames, "PA")
			},
		},
		{
			// The auth order beats the power order. P1 gives bob 50. On one
			// side bob gives charlie 10 (PB1) and then alice gives zara 10
			// (PA2, citing PB1); the other side is still at P1.
			//
			// Step 1 sorts P1, PB1, PA2: PB1 is an auth event of PA2, so it
			// comes first although alice outranks bob. Each is allowed in
			// turn and PA2 holds. Sorting by power alone would apply PB1
			// last, and PB1 is allowed against PA2 (zara's 10 is below bob's
			// 50): the power levels would go back in time.
			name:     "auth order before power order",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":50`))
				r.state("PB1", bob, typePL, "", pl(v, `"@bob:example.org":50,"@charlie:example.org":10`))
				r.state("PA2", alice, typePL, "", pl(v, `"@bob:example.org":50,"@charlie:example.org":10,"@zara:example.org":10`))
				r.state("T", alice, typeTopic, "", `{"topic":"t"}`, "P1")
				return []string{"PA2", "T"}, r.with(baseNames, "PA2", "T")
			},
		},
		{
			// A power event's auth chain goes with it. P1 gives bob 50. On
			// one side bob leaves (LB), rejoins the public room (JB) and
			// gives charlie 10 (PB); on the other alice makes the room
			// invite-only (JRA).
			//
			// The power events are IJR, P1, JRA and PB; PB's auth chain in
			// the full conflicted set adds IMB, LB and JB, and they are
			// sorted with them: IJR, P1, JRA (alice 100, no auth event in
			// the set left), then IMB, LB, JB, PB along their auth edges.
			// Applied in turn: the room is invite-only before bob's events
			// are checked, so his first join is refused, his leave stands,
			// his rejoin is refused and so is PB, sent by a user who left.
			// Bob has left, P1 holds. (Leaving LB, JB or IMB to step 3 would
			// check PB before JB was refused, and let it in.)
			name:     "auth chain of a power event goes first",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":50`))
				r.state("LB", bob, typeMember, bob.String(), member("leave"))
				r.state("JB", bob, typeMember, bob.String(), member("join"))
				r.state("PB", bob, typePL, "", pl(v, `"@bob:example.org":50,"@charlie:example.org":10`))
				r.state("JRA", alice, typeJR, "", `{"join_rule":"invite"}`, "P1")
				return []string{"PB", "JRA"}, r.with(baseNames, "P1", "LB", "JRA")
			},
		},
		{
			// Join rules flipped on both sides. P1 gives bob 50; the room
			// becomes invite-only (JR1). Alice opens it (JRA, public) and
			// evelyn joins (ME); meanwhile bob switches it to knock (JRB).
			//
			// Both join rules are power events. Alice's (100) is applied
			// before bob's (50), and bob's is allowed after it (50 ≥
			// state_default), so the room is knock-only. Evelyn's join is
			// ordered in step 3 and refused: knock rooms need an invite.
			name:     "join rules flipped on both sides",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":50`))
				r.state("JR1", alice, typeJR, "", `{"join_rule":"invite"}`)
				r.state("JRA", alice, typeJR, "", `{"join_rule":"public"}`)
				r.state("ME", evelyn, typeMember, evelyn.String(), member("join"))
				r.state("JRB", bob, typeJR, "", `{"join_rule":"knock"}`, "JR1")
				return []string{"ME", "JRB"}, r.with(baseNames, "P1", "JRB")
			},
		},
		{
			// Topics set at equal power, at different times. P1 gives bob
			// 50. Alice sets TA; later, on the other side, bob sets TB.
			//
			// Topics are not power events: step 3 orders them on the
			// mainline of P1. Both cite P1 (position 0), so the earlier TA is
			// applied first and the later TB last: TB holds. Power plays no
			// part here.
			name:     "topics at equal mainline position, by timestamp",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":50`))
				r.state("TA", alice, typeTopic, "", `{"topic":"A"}`)
				r.state("TB", bob, typeTopic, "", `{"topic":"B"}`, "P1")
				return []string{"TA", "TB"}, r.with(baseNames, "P1", "TB")
			},
		},
		{
			// Unconflicted state passes through. Bob, at 50, set a topic (TB)
			// before the fork, so both sides hold TB. Alice bans bob (MB) on
			// one side and names the room (N) on the other.
			//
			// Bob's member key and the name are conflicted; the topic is not.
			// The ban is applied, and the name; TB is never re-checked
			// (step 5 puts the unconflicted state back over the result), so
			// bob's topic stays although he could not set it now.
			name:     "unconflicted state passes through",
			versions: []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", pl(v, `"@bob:example.org":50`))
				r.state("TB", bob, typeTopic, "", `{"topic":"bob's"}`)
				r.state("MB", alice, typeMember, bob.String(), member("ban"))
				r.state("N", alice, typeName, "", `{"name":"Salle"}`, "TB")
				return []string{"MB", "N"}, r.with(baseNames, "P1", "TB", "MB", "N")
			},
		},
		{
			// A room version 12 room whose creator, alice, is not in the power
			// levels: IPOWER names only bob, at 100. Bob raises charlie to
			// 100 (PB) first; later alice, the creator, demotes bob (PA).
			//
			// In v12 the creator's power is infinite, so PA is ordered before
			// PB although bob's 100 is the highest level the power levels
			// name and PB is older. PA is allowed (creators pass the power
			// levels checks); PB, against PA, comes from bob at 0 and may not
			// raise charlie. The creator's change wins.
			name:     "v12 creator outside the power levels",
			versions: []id.RoomVersion{id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", `{"users":{"@bob:example.org":100}}`)
				r.state("PB", bob, typePL, "", `{"users":{"@bob:example.org":100,"@charlie:example.org":100}}`)
				r.state("PA", alice, typePL, "", `{"users":{"@bob:example.org":0}}`, "P1")
				return []string{"PB", "PA"}, r.with(baseNames, "PA")
			},
		},
		{
			// The same room, with join rules: bob (100 in the power levels)
			// switches to knock first (JRB); later alice, the creator,
			// switches to invite (JRA).
			//
			// The creator is ordered first, so JRA is applied, then JRB,
			// which bob may still send: knock holds. Were the creator read
			// from the power levels (users_default 0), bob would go first and
			// alice's invite would hold instead: this case pins the
			// creators' infinite power in the ordering.
			name:     "v12 creator ordered first",
			versions: []id.RoomVersion{id.RoomV12},
			build: func(r *room, v id.RoomVersion) ([]string, []string) {
				r.state("P1", alice, typePL, "", `{"users":{"@bob:example.org":100}}`)
				r.state("JRB", bob, typeJR, "", `{"join_rule":"knock"}`)
				r.state("JRA", alice, typeJR, "", `{"join_rule":"invite"}`, "P1")
				return []string{"JRB", "JRA"}, r.with(baseNames, "P1", "JRB")
			},
		},
	}
	for _, tc := range cases {
		for _, v := range tc.versions {
			t.Run("v"+string(v)+"/"+tc.name, func(t *testing.T) {
				r := baseRoom(t, v)
				merge, want := tc.build(r, v)
				r.wantState(r.resolve(merge...), r.stateOf(want...))
				r.wantState(r.resolve(merge[1], merge[0]), r.stateOf(want...))
			})
		}
	}
}

// TestTopicTieBreakByEventID: two topics at the same mainline position and
// the same origin_server_ts. The spec's last tie-break is the event ID: the
// smaller ID is applied first, so the topic whose ID sorts last holds. IDs
// are hashes, so which one that is cannot be written down in advance; the
// test states the rule and checks it for several pairs, so both outcomes
// are exercised.
func TestTopicTieBreakByEventID(t *testing.T) {
	sawFirst, sawSecond := false, false
	for i := range 8 {
		r := baseRoom(t, id.RoomV11)
		const ts = 1_800_000_000_000
		a := r.add(spec{name: "TA", sender: alice, typ: typeTopic, key: sk(""), content: fmt.Sprintf(`{"topic":"a%d"}`, i), ts: ts})
		b := r.add(spec{name: "TB", sender: alice, typ: typeTopic, key: sk(""), content: fmt.Sprintf(`{"topic":"b%d"}`, i), ts: ts, prev: []string{"IMZ"}})
		want := "TA"
		if b > a {
			want = "TB"
			sawSecond = true
		} else {
			sawFirst = true
		}
		r.wantState(r.resolve("TA", "TB"), r.stateOf(r.with(baseNames, want)...))
	}
	if !sawFirst || !sawSecond {
		t.Fatalf("the pairs did not exercise both orders (first %v, second %v)", sawFirst, sawSecond)
	}
}

// TestV12StartsFromEmptyState shows the first change of state resolution
// v2.1. Alice changed the power levels (PA, over PL0) and then left the
// room (L). One state set holds PA, the other (as a lossy earlier merge
// could leave it) PL0; both agree she has left.
//
// Only the power levels are conflicted, {PL0, PA}; both are in both full
// auth chains (L cites PA, PA cites PL0), so the auth difference is empty.
// Step 1 sorts PL0 → PA.
//
//   - v11 starts from the unconflicted state, where alice has left: both
//     power levels events fail rule 6 and the room loses its power levels
//     altogether (the "state reset" MSC4297 names).
//   - v12 starts from an empty state, so each event is checked against its
//     own auth events, where alice is joined: PL0, then PA, are allowed and
//     PA holds.
func TestV12StartsFromEmptyState(t *testing.T) {
	for _, tc := range []struct {
		version id.RoomVersion
		pl0, pa string
		want    []string
	}{
		{id.RoomV11, `{"users":{"@alice:example.org":100}}`, `{"users":{"@alice:example.org":100,"@bob:example.org":50}}`,
			[]string{"CREATE", "L", "IJR", "IMB"}},
		{id.RoomV12, `{"users":{}}`, `{"users":{"@bob:example.org":50}}`,
			[]string{"CREATE", "L", "PA", "IJR", "IMB"}},
	} {
		t.Run("v"+string(tc.version), func(t *testing.T) {
			r := newRoom(t, tc.version)
			r.create(alice, "")
			r.state("IMA", alice, typeMember, alice.String(), member("join"))
			r.state("PL0", alice, typePL, "", tc.pl0)
			r.state("IJR", alice, typeJR, "", `{"join_rule":"public"}`)
			r.state("IMB", bob, typeMember, bob.String(), member("join"))
			r.state("PA", alice, typePL, "", tc.pa)
			r.state("L", alice, typeMember, alice.String(), member("leave"))
			s1 := r.after["L"]
			s2 := maps.Clone(s1)
			s2[StateKey{Type: typePL}] = r.id("PL0")
			got, err := Resolve(context.Background(), tc.version, []StateMap{s1, s2}, r)
			if err != nil {
				t.Fatal(err)
			}
			r.wantState(got, r.stateOf(tc.want...))
		})
	}
}

// TestAuthChainIncludesStateEvents pins the reading of "full auth chain"
// this package shares with Synapse: a state set's own events count as
// reachable from it, so an unconflicted event is never in the auth
// difference. The input is crafted: both sets hold power levels P1, which
// one set's events cite (TB, JZ) and the other's do not (TA cites the older
// IPOWER and is the most recent event).
//
// Conflicted: the topic {TB, TA} and zara {JZ, IMZ}; no power event.
//
//   - v11 starts from the unconflicted state, so the mainline is P1 →
//     IPOWER: IMZ and TA (position 1) go before TB and JZ (position 0), and
//     TB holds the topic.
//   - v12 starts from an empty state and step 1 has nothing to apply, so
//     the partial state has no power levels and the mainline is empty: the
//     timestamps alone order IMZ, TB, JZ, TA, and TA holds. (Reading the
//     auth chains without the sets' own events would put P1 in the auth
//     difference, hence on the mainline, and give TB.)
func TestAuthChainIncludesStateEvents(t *testing.T) {
	for _, tc := range []struct {
		version id.RoomVersion
		p1      string
		topic   string
	}{
		{id.RoomV11, `{"users":{"@alice:example.org":100,"@bob:example.org":50}}`, "TB"},
		{id.RoomV12, `{"users":{"@bob:example.org":50}}`, "TA"},
	} {
		t.Run("v"+string(tc.version), func(t *testing.T) {
			r := baseRoom(t, tc.version)
			r.state("P1", alice, typePL, "", tc.p1)
			r.state("TB", alice, typeTopic, "", `{"topic":"B"}`)
			r.state("JZ", zara, typeMember, zara.String(), `{"membership":"join","displayname":"Z"}`)
			r.state("TA", alice, typeTopic, "", `{"topic":"A"}`, "IMZ")
			s1 := r.after["JZ"]
			s2 := maps.Clone(r.after["TA"])
			s2[StateKey{Type: typePL}] = r.id("P1")
			got, err := Resolve(context.Background(), tc.version, []StateMap{s1, s2}, r)
			if err != nil {
				t.Fatal(err)
			}
			r.wantState(got, r.stateOf(r.with(baseNames, "P1", "JZ", tc.topic)...))
		})
	}
}
