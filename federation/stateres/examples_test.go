package stateres

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestWorkedExamples rebuilds the spec's example of a fork (Server-Server
// API, "Room State Resolution") and the examples that motivated state
// resolution v2 (MSC1442, the proposal behind the room version 2 algorithm),
// in rooms of version 10 and 11. Each expected state is written out by hand;
// the comment of each case walks through the algorithm.
//
// All of them start from baseRoom: alice (100) created a public room that
// bob, charlie and zara (0) joined. Timestamps grow in the order the events
// are added, so "later" below means "added later".
func TestWorkedExamples(t *testing.T) {
	cases := []struct {
		name  string
		build func(r *room) (merge []string, want []string)
	}{
		{
			// The spec's picture: E0 – E1, then E2 – E3 on one side and E4 on
			// the other, merging at E5. E3 and E4 both set m.room.name.
			//
			// Only the name is conflicted, and no power event is: step 1 is
			// empty, and step 3 orders {E3, E4} on the mainline of IPOWER.
			// Both cite IPOWER (mainline position 0), so origin_server_ts
			// decides: E3 first, then E4, both allowed (alice is at 100 ≥
			// state_default 50). The last one applied, E4, holds the name.
			name: "spec fork of two room names",
			build: func(r *room) ([]string, []string) {
				r.add(spec{name: "E1", sender: alice, typ: typeMsg, content: `{"body":"E1"}`})
				r.add(spec{name: "E2", sender: bob, typ: typeMsg, content: `{"body":"E2"}`})
				r.state("E3", alice, typeName, "", `{"name":"Salle A"}`)
				r.state("E4", alice, typeName, "", `{"name":"Salle B"}`, "E1")
				return []string{"E3", "E4"}, r.with(baseNames, "E4")
			},
		},
		{
			// MSC1442 "ban vs power levels". Alice gives bob 50 (PA). On one
			// side she re-joins (MA) and bans bob (MB); on the other bob, at
			// 50, re-sends the power levels (PB).
			//
			// Conflicted: power levels {PA, PB}, alice {IMA, MA}, bob {IMB,
			// MB}. The power events are PA, PB and the ban MB; their auth
			// chains inside the full conflicted set add IMA, MA and IMB.
			// Kahn's order: IMA (no auth event in the set), then PA (alice
			// 100, before IMB at 0), MA, IMB, then MB (alice 100) before PB
			// (bob 50). Applied in turn, MB bans bob, so PB, sent by a user
			// who is no longer joined, fails rule 6. Power levels PA, alice
			// MA, bob banned.
			name: "ban vs power levels",
			build: func(r *room) ([]string, []string) {
				r.state("PA", alice, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50}}`)
				r.state("MA", alice, typeMember, alice.String(), member("join"))
				r.state("MB", alice, typeMember, bob.String(), member("ban"))
				r.state("PB", bob, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50}}`, "PA")
				return []string{"MB", "PB"}, r.with(baseNames, "PA", "MA", "MB")
			},
		},
		{
			// MSC1442 "join rule evasion". Alice makes the room invite-only
			// (JR) while evelyn joins the public room on the other side (ME).
			//
			// JR and IJR are power events (join rules): step 1 applies IJR
			// then JR, so the partial state is invite-only. ME is ordered in
			// step 3 and fails: evelyn has no invite. Evelyn is not a member.
			name: "join rule evasion",
			build: func(r *room) ([]string, []string) {
				r.state("JR", alice, typeJR, "", `{"join_rule":"invite"}`)
				r.state("ME", evelyn, typeMember, evelyn.String(), member("join"), "IMZ")
				return []string{"JR", "ME"}, r.with(baseNames, "JR")
			},
		},
		{
			// MSC1442 "off-topic power levels". Alice gives bob 50 (PA); bob
			// gives charlie 50 (PB); charlie lowers himself to 0 (PC). The
			// other side is still at PA.
			//
			// The auth difference is {PB, PC}; with PA all three are power
			// events, sorted along their auth edges PA → PB → PC and each
			// allowed against the one before. PC wins, as on the longer side.
			name: "off-topic power levels",
			build: func(r *room) ([]string, []string) {
				r.state("PA", alice, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50}}`)
				r.state("PB", bob, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50,"@charlie:example.org":50}}`)
				r.state("PC", charlie, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50,"@charlie:example.org":0}}`)
				return []string{"PC", "PA"}, r.with(baseNames, "PC")
			},
		},
		{
			// MSC1442 "topic reset". Alice sets a topic (T1), gives bob 50
			// (PA); bob sets a topic (T2); alice bans bob (MB). The other side
			// is still at T1.
			//
			// Power events IPOWER, PA and MB are applied first: bob is banned.
			// Then the topics, on the mainline PA → IPOWER: T1 cites IPOWER
			// (position 1), T2 cites PA (position 0), so T1 goes first and T2
			// last; T2 fails, bob being banned. The topic is T1 — bob's topic
			// does not survive his ban.
			name: "topic reset",
			build: func(r *room) ([]string, []string) {
				r.state("T1", alice, typeTopic, "", `{"topic":"T1"}`)
				r.state("PA", alice, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50}}`)
				r.state("T2", bob, typeTopic, "", `{"topic":"T2"}`)
				r.state("MB", alice, typeMember, bob.String(), member("ban"))
				return []string{"MB", "T1"}, r.with(baseNames, "T1", "PA", "MB")
			},
		},
		{
			// MSC1442 mainline ordering. T1, PA1 (bob 50), T2, then PA2
			// (alice reserves power levels changes for 100) and T3 by bob on
			// one side; on the other bob re-sends PA1's levels (PB) and alice
			// sets T4, later than T3.
			//
			// Step 1: PA2 (alice 100) before PB (bob 50); PB then fails
			// against PA2 (it would lower events.m.room.power_levels from
			// 100, above bob's 50). Step 3, mainline PA2 → PA1 → IPOWER: T4
			// cites PB, which is off the mainline, whose own power levels
			// event PA1 is at position 1; T3 cites PA2 (position 0). So T4
			// is applied first and T3 last, although T4 is more recent: T3
			// holds the topic.
			name: "mainline ordering",
			build: func(r *room) ([]string, []string) {
				r.state("T1", alice, typeTopic, "", `{"topic":"T1"}`)
				r.state("PA1", alice, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50}}`)
				r.state("T2", alice, typeTopic, "", `{"topic":"T2"}`)
				r.state("PA2", alice, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50},"events":{"m.room.power_levels":100}}`)
				r.state("T3", bob, typeTopic, "", `{"topic":"T3"}`)
				r.state("PB", bob, typePL, "", `{"users":{"@alice:example.org":100,"@bob:example.org":50}}`, "PA1")
				r.state("T4", alice, typeTopic, "", `{"topic":"T4"}`)
				return []string{"T3", "T4"}, r.with(baseNames, "PA2", "T3")
			},
		},
	}
	for _, version := range []id.RoomVersion{id.RoomV10, id.RoomV11} {
		for _, tc := range cases {
			t.Run("v"+string(version)+"/"+tc.name, func(t *testing.T) {
				r := baseRoom(t, version)
				merge, want := tc.build(r)
				r.wantState(r.resolve(merge...), r.stateOf(want...))
				// The order of the state sets never matters.
				rev := make([]string, len(merge))
				for i, m := range merge {
					rev[len(merge)-1-i] = m
				}
				r.wantState(r.resolve(rev...), r.stateOf(want...))
			})
		}
	}
}
