package stateres

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"slices"

	"github.com/tidwall/gjson"
	"go.mau.fi/util/exgjson"
)

// creatorPower is the power level of a room version 12 creator: above any
// level m.room.power_levels can give.
const creatorPower = math.MaxInt64

// reverseTopologicalPowerOrder sorts the events of x so that every event
// comes after its auth events in x (Kahn's algorithm), choosing at each step
// the smallest ready event by: greater sender power, then smaller
// origin_server_ts, then smaller event ID.
func (r *resolution) reverseTopologicalPowerOrder(x []bool) ([]int32, error) {
	var members []int32
	for v, in := range x {
		if in {
			members = append(members, int32(v))
		}
	}
	if len(members) == 0 {
		return nil, nil
	}
	pos := make(map[int32]int, len(members))
	for i, v := range members {
		pos[v] = i
	}
	waiting := make([]int, len(members))      // auth events in x not yet output
	dependents := make([][]int, len(members)) // events in x citing this one
	for i, v := range members {
		for _, a := range r.g.nodes[v].auth {
			if j, ok := pos[a]; ok {
				waiting[i]++
				dependents[j] = append(dependents[j], i)
			}
		}
	}
	ready := &powerHeap{r: r}
	for i, v := range members {
		if waiting[i] == 0 {
			heap.Push(ready, powerItem{n: v, power: r.senderPower(v), i: i})
		}
	}
	out := make([]int32, 0, len(members))
	for ready.Len() > 0 {
		it := heap.Pop(ready).(powerItem)
		out = append(out, it.n)
		for _, d := range dependents[it.i] {
			waiting[d]--
			if waiting[d] == 0 {
				v := members[d]
				heap.Push(ready, powerItem{n: v, power: r.senderPower(v), i: d})
			}
		}
	}
	if len(out) != len(members) {
		// The whole graph was checked for cycles already; keep the guard so
		// a future change cannot turn a cycle into a silently short list.
		return nil, fmt.Errorf("%w: in the power events", ErrAuthCycle)
	}
	return out, nil
}

type powerItem struct {
	n     int32
	power int64
	i     int
}

type powerHeap struct {
	r     *resolution
	items []powerItem
}

func (h *powerHeap) Len() int { return len(h.items) }
func (h *powerHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.power != b.power {
		return a.power > b.power
	}
	return h.r.tsThenID(a.n, b.n) < 0
}
func (h *powerHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *powerHeap) Push(x any)    { h.items = append(h.items, x.(powerItem)) }
func (h *powerHeap) Pop() any {
	last := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return last
}

// tsThenID orders by origin_server_ts, then by event ID.
func (r *resolution) tsThenID(a, b int32) int {
	na, nb := &r.g.nodes[a], &r.g.nodes[b]
	if c := cmp.Compare(na.ev.OriginServerTS, nb.ev.OriginServerTS); c != 0 {
		return c
	}
	return cmp.Compare(na.id, nb.id)
}

// senderPower is the power level of v's sender as v's own auth events see
// it. In room version 12 the creators outrank everyone.
func (r *resolution) senderPower(v int32) int64 {
	ev := r.g.nodes[v].ev
	if r.creators != nil {
		if _, ok := r.creators[ev.Sender]; ok {
			return creatorPower
		}
	}
	if pl := r.g.authOfKey(v, powerLevelsKey); pl >= 0 {
		content := r.g.nodes[pl].ev.Content
		if lvl := gjson.GetBytes(content, exgjson.Path("users", ev.Sender.String())); lvl.Type == gjson.Number {
			return lvl.Int()
		}
		if lvl := gjson.GetBytes(content, "users_default"); lvl.Type == gjson.Number {
			return lvl.Int()
		}
		return 0
	}
	if r.version.RoomIDIsCreateEventID() {
		return 0
	}
	// No power levels yet: the creator has 100.
	if c := r.g.authOfKey(v, createKey); c >= 0 {
		ce := r.g.nodes[c].ev
		creator := ce.Sender.String()
		if r.version.CreatorInContent() {
			creator = gjson.GetBytes(ce.Content, "creator").Str
		}
		if creator == ev.Sender.String() {
			return 100
		}
	}
	return 0
}

// mainlineOrder sorts events by their mainline position relative to the
// power levels event pl (-1 if the partial state has none), earlier
// positions first, then by origin_server_ts, then by event ID.
func (r *resolution) mainlineOrder(events []int32, pl int32) []int32 {
	if len(events) == 0 {
		return events
	}
	// The mainline: pl, the power levels event it cites, and so on.
	// position[p] is p's index on the mainline; the walk cannot loop since
	// the graph is acyclic.
	onMainline := map[int32]int{}
	for i, p := 0, pl; p >= 0; i, p = i+1, r.g.authOfKey(p, powerLevelsKey) {
		onMainline[p] = i
	}
	// depth[q] memoises the mainline position of an event whose power
	// levels auth event is q.
	memo := map[int32]int{}
	const infinite = math.MaxInt
	positionVia := func(q int32) int {
		var walked []int32
		result := infinite
		for q >= 0 {
			if i, ok := onMainline[q]; ok {
				result = i
				break
			}
			if d, ok := memo[q]; ok {
				result = d
				break
			}
			walked = append(walked, q)
			q = r.g.authOfKey(q, powerLevelsKey)
		}
		for _, w := range walked {
			memo[w] = result
		}
		return result
	}
	position := make(map[int32]int, len(events))
	for _, e := range events {
		position[e] = positionVia(r.g.authOfKey(e, powerLevelsKey))
	}
	slices.SortFunc(events, func(a, b int32) int {
		// A greater position means an older power levels event: first.
		if c := cmp.Compare(position[b], position[a]); c != 0 {
			return c
		}
		return r.tsThenID(a, b)
	})
	return events
}
