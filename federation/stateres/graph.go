package stateres

import (
	"context"
	"fmt"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// node is one loaded event. Nodes are addressed by their index in
// graph.nodes, and auth edges are indices, so the graph costs a few words
// per edge however long the chains are.
type node struct {
	id    id.EventID
	ev    *pdu.PDU
	key   StateKey
	auth  []int32 // distinct loaded auth events, in auth_events order
	power bool    // a power event in the spec's sense
}

type graph struct {
	nodes []node
	index map[id.EventID]int32
}

func newGraph() *graph {
	return &graph{index: map[id.EventID]int32{}}
}

// load fetches roots and, transitively, their auth events, in batches. Each
// event is fetched at most once per resolution. Unknown events are gathered
// and reported together.
func (g *graph) load(ctx context.Context, f EventFetcher, roots []id.EventID, max int) error {
	seen := make(map[id.EventID]struct{}, len(roots))
	var queue []id.EventID
	for _, r := range roots {
		if _, ok := g.index[r]; ok {
			continue
		}
		if _, ok := seen[r]; !ok {
			seen[r] = struct{}{}
			queue = append(queue, r)
		}
	}
	first := len(g.nodes)
	missing := &MissingEventsError{}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(queue), fetchBatch)
		batch := queue[:n:n]
		queue = queue[n:]
		got, err := f.Events(ctx, batch)
		if err != nil {
			return fmt.Errorf("stateres: fetch events: %w", err)
		}
		for _, evID := range batch {
			ev := got[evID]
			if ev == nil {
				missing.N++
				if len(missing.IDs) < maxListedMissing {
					missing.IDs = append(missing.IDs, evID)
				}
				continue
			}
			if ev.StateKey == nil {
				return fmt.Errorf("%w: %s", ErrNotStateEvent, evID)
			}
			if len(g.nodes) >= max {
				return fmt.Errorf("%w: more than %d events", ErrTooManyEvents, max)
			}
			g.index[evID] = int32(len(g.nodes))
			g.nodes = append(g.nodes, node{
				id:    evID,
				ev:    ev,
				key:   StateKey{Type: ev.Type, StateKey: *ev.StateKey},
				power: isPowerEvent(ev),
			})
			for _, a := range ev.AuthEvents {
				if _, ok := g.index[a]; ok {
					continue
				}
				if _, ok := seen[a]; !ok {
					seen[a] = struct{}{}
					queue = append(queue, a)
				}
			}
		}
	}
	if missing.N > 0 {
		return missing
	}
	// Every auth event of the new nodes is loaded now: link them. One
	// backing array holds all the edges.
	total := 0
	for i := first; i < len(g.nodes); i++ {
		total += len(g.nodes[i].ev.AuthEvents)
	}
	edges := make([]int32, 0, total)
	for i := first; i < len(g.nodes); i++ {
		start := len(edges)
		for _, a := range g.nodes[i].ev.AuthEvents {
			ai := g.index[a]
			dup := false
			for _, e := range edges[start:] {
				if e == ai {
					dup = true
					break
				}
			}
			if !dup {
				edges = append(edges, ai)
			}
		}
		g.nodes[i].auth = edges[start:len(edges):len(edges)]
	}
	return nil
}

// topoOrder returns every node with each node after all of its auth events,
// or ErrAuthCycle. It is an iterative depth-first search, so a chain of any
// length costs no stack.
func (g *graph) topoOrder() ([]int32, error) {
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, len(g.nodes))
	order := make([]int32, 0, len(g.nodes))
	type frame struct {
		n    int32
		next int
	}
	var stack []frame
	for root := range g.nodes {
		if color[root] != white {
			continue
		}
		stack = append(stack[:0], frame{n: int32(root)})
		color[root] = grey
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			auth := g.nodes[top.n].auth
			if top.next < len(auth) {
				a := auth[top.next]
				top.next++
				switch color[a] {
				case white:
					color[a] = grey
					stack = append(stack, frame{n: a})
				case grey:
					return nil, fmt.Errorf("%w: through %s", ErrAuthCycle, g.nodes[a].id)
				}
				continue
			}
			color[top.n] = black
			order = append(order, top.n)
			stack = stack[:len(stack)-1]
		}
	}
	return order, nil
}

// authOfKey returns the first auth event of n with the given key, or -1.
func (g *graph) authOfKey(n int32, k StateKey) int32 {
	for _, a := range g.nodes[n].auth {
		if g.nodes[a].key == k {
			return a
		}
	}
	return -1
}

// isPowerEvent: power levels, join rules, or a membership of leave or ban
// whose sender is not its target (a kick or a ban).
func isPowerEvent(ev *pdu.PDU) bool {
	if ev.StateKey == nil {
		return false
	}
	switch ev.Type {
	case event.StatePowerLevels.Type, event.StateJoinRules.Type:
		return *ev.StateKey == ""
	case event.StateMember.Type:
		m := gjson.GetBytes(ev.Content, "membership").Str
		return (m == string(event.MembershipLeave) || m == string(event.MembershipBan)) &&
			*ev.StateKey != ev.Sender.String()
	}
	return false
}
