package stateres

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"maunium.net/go/mautrix/id"
)

// largeRoom is the benchmark's room: alice creates a public room that
// `members` users join one after the other, then two writers extend it from
// that extremity with `perSide` state events each:
//
//   - side A: 45 members change their display names and alice bans 5 others
//     (power events);
//   - side B: 45 other members change their display names, alice changes
//     the power levels 4 times (power events) and makes the room
//     knock-only (a power event).
//
// Every change is allowed whatever the order (the display name changes are
// joins over joins, allowed under knock too; the bans and the power levels
// are alice's, at 100), so the resolved state holds each side's last event
// for each key it touched: want is S_A with S_B's changes over it.
func largeRoom(tb testing.TB, v id.RoomVersion, members int) (r *room, sets []StateMap, want StateMap) {
	tb.Helper()
	r = newRoom(tb, v)
	r.create(alice, "")
	r.state("IMA", alice, typeMember, alice.String(), member("join"))
	plUsers := `"@alice:example.org":100`
	if v == id.RoomV12 {
		plUsers = ""
	}
	r.state("IPOWER", alice, typePL, "", fmt.Sprintf(`{"users":{%s}}`, plUsers))
	r.state("IJR", alice, typeJR, "", `{"join_rule":"public"}`)
	user := func(i int) id.UserID { return id.UserID(fmt.Sprintf("@m%04d:example.org", i)) }
	for i := range members {
		r.state(fmt.Sprintf("J%d", i), user(i), typeMember, user(i).String(), member("join"))
	}
	fork := r.last
	base := r.after[fork]

	// Side A.
	r.last = fork
	for i := range 45 {
		r.state(fmt.Sprintf("A%d", i), user(i), typeMember, user(i).String(), fmt.Sprintf(`{"membership":"join","displayname":"A %d"}`, i))
	}
	for i := range 5 {
		target := user(members - 1 - i)
		r.state(fmt.Sprintf("BAN%d", i), alice, typeMember, target.String(), member("ban"))
	}
	sideA := r.last

	// Side B.
	r.last = fork
	for i := range 45 {
		u := user(45 + i)
		r.state(fmt.Sprintf("B%d", i), u, typeMember, u.String(), fmt.Sprintf(`{"membership":"join","displayname":"B %d"}`, i))
	}
	for i := range 4 {
		r.state(fmt.Sprintf("P%d", i), alice, typePL, "", fmt.Sprintf(`{"users":{%s},"events":{"org.example.n":%d}}`, plUsers, i+1))
	}
	r.state("JRB", alice, typeJR, "", `{"join_rule":"knock"}`)
	sideB := r.last

	sets = []StateMap{r.after[sideA], r.after[sideB]}
	want = maps.Clone(r.after[sideA])
	for k, e := range r.after[sideB] {
		if base[k] != e {
			want[k] = e
		}
	}
	return r, sets, want
}

// TestLargeRoom checks the benchmark's answer.
func TestLargeRoom(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			r, sets, want := largeRoom(t, v, 1000)
			got, err := Resolve(context.Background(), v, sets, r)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, want) {
				t.Errorf("resolved %d entries, want %d; differing: %s", len(got), len(want), r.show(diffStates(got, want)))
			}
		})
	}
}

func diffStates(a, b StateMap) StateMap {
	out := StateMap{}
	for k, e := range a {
		if b[k] != e {
			out[k] = e
		}
	}
	for k, e := range b {
		if _, ok := a[k]; !ok {
			out[k] = e
		}
	}
	return out
}

// BenchmarkResolve: a room with 1,000 members and 100 conflicting state
// events, resolved from an in-memory fetcher (so the figure is the
// algorithm's, not a store's).
func BenchmarkResolve(b *testing.B) {
	for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		b.Run("v"+string(v), func(b *testing.B) {
			r, sets, _ := largeRoom(b, v, 1000)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Resolve(ctx, v, sets, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
