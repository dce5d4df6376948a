package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// topology says who is in which room. Users are dealt to rooms round-robin
// so that, with users = rooms*members, every user is in exactly one room and
// with fewer users they are shared evenly.
type topology struct {
	users int
	rooms [][]int32         // member user indices; rooms[r][0] creates room r
	slot  []map[int32]int32 // per room: user index -> position in rooms[r]
}

func buildTopology(users, rooms, members int) (*topology, error) {
	switch {
	case users < 1 || rooms < 1:
		return nil, fmt.Errorf("need at least one user and one room")
	case members < 2:
		return nil, fmt.Errorf("--members must be at least 2 (got %d): a delivery needs a receiver", members)
	case members > users:
		return nil, fmt.Errorf("--members %d exceeds --users %d: a room's members must be distinct users", members, users)
	}
	t := &topology{users: users, rooms: make([][]int32, rooms), slot: make([]map[int32]int32, rooms)}
	for r := range rooms {
		t.slot[r] = make(map[int32]int32, members)
		for j := range members {
			u := int32((r*members + j) % users)
			t.rooms[r] = append(t.rooms[r], u)
			t.slot[r][u] = int32(j)
		}
	}
	return t, nil
}

// membersOf returns the users belonging to any of the first n rooms.
func (t *topology) membersOf(n int) []int32 {
	in := make([]bool, t.users)
	var out []int32
	for _, room := range t.rooms[:n] {
		for _, u := range room {
			if !in[u] {
				in[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

type msgStatus uint8

const (
	msgPending msgStatus = iota
	msgAccepted
	msgFailed
)

// msgState is everything known about one bench message: when it was due,
// whether the server accepted it, and, per room member (including the
// sender, whose copy is the "own echo"), when and how often it arrived.
type msgState struct {
	room   int32
	sender int32 // slot of the sender within the room
	warmup bool
	status msgStatus
	origin time.Duration
	first  []time.Duration
	count  []uint16
}

const trackerShards = 64

// tracker matches sends against what the sync loops see. It is sharded by
// sequence number because hundreds of sync loops and senders hit it at once
// and a single lock would become the generator's own bottleneck.
type tracker struct {
	run    string
	topo   *topology
	shards [trackerShards]trackerShard
	// outstanding counts (accepted message, member) pairs not yet seen, so
	// the drain phase can stop as soon as everything has arrived instead of
	// always sleeping for the full --drain.
	outstanding atomic.Int64
	unknown     atomic.Int64
	recovered   atomic.Int64
}

func newTracker(run string, topo *topology) *tracker {
	t := &tracker{run: run, topo: topo}
	for i := range t.shards {
		t.shards[i].m = make(map[int64]*msgState)
	}
	return t
}

type trackerShard struct {
	mu sync.Mutex
	m  map[int64]*msgState
}

func (t *tracker) shard(seq int64) *trackerShard {
	return &t.shards[uint64(seq)%trackerShards]
}

// begin registers a message before its send call is issued. It has to come
// first: on a fast server the sync loops routinely see an event before the
// PUT that created it has returned.
func (t *tracker) begin(seq int64, room, senderSlot int32, origin time.Duration, warmup bool) {
	n := len(t.topo.rooms[room])
	m := &msgState{room: room, sender: senderSlot, warmup: warmup, origin: origin,
		first: make([]time.Duration, n), count: make([]uint16, n)}
	s := t.shard(seq)
	s.mu.Lock()
	s.m[seq] = m
	s.mu.Unlock()
}

// finish records whether the server accepted the message. Only accepted
// messages are owed to their members; a failed send that shows up anyway is
// reported separately rather than as a success.
func (t *tracker) finish(seq int64, accepted bool) {
	s := t.shard(seq)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m[seq]
	if m == nil {
		return
	}
	if !accepted {
		m.status = msgFailed
		return
	}
	m.status = msgAccepted
	var unseen int64
	for _, c := range m.count {
		if c == 0 {
			unseen++
		}
	}
	t.outstanding.Add(unseen)
}

// seen records that user observed message seq at time at. viaGap marks
// events fetched with /messages after a limited sync: those pages can
// overlap what the user already saw, so a repeat there is our own
// re-reading, not a server duplicate.
func (t *tracker) seen(seq int64, user int32, at time.Duration, viaGap bool) {
	s := t.shard(seq)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m[seq]
	if m == nil {
		t.unknown.Add(1)
		return
	}
	slot, ok := t.topo.slot[m.room][user]
	if !ok {
		t.unknown.Add(1)
		return
	}
	if m.count[slot] > 0 {
		if !viaGap && m.count[slot] < ^uint16(0) {
			m.count[slot]++
		}
		return
	}
	m.count[slot] = 1
	m.first[slot] = at
	if viaGap {
		t.recovered.Add(1)
	}
	if m.status == msgAccepted {
		t.outstanding.Add(-1)
	}
}

// Deliveries is the correctness half of the report. Pairs are (accepted
// message, room member); the sender's own copy is counted apart because the
// brief's "lost"/"duplicated" are about the other members.
type Deliveries struct {
	Expected       int64 `json:"expected_pairs"`
	Delivered      int64 `json:"delivered_pairs"`
	Lost           int64 `json:"lost_pairs"`
	Duplicated     int64 `json:"duplicated_pairs"`
	EchoExpected   int64 `json:"own_echo_expected"`
	EchoDelivered  int64 `json:"own_echo_delivered"`
	EchoLost       int64 `json:"own_echo_lost"`
	EchoDuplicated int64 `json:"own_echo_duplicated"`
	// Seen by someone although the send call failed (e.g. timed out after
	// the server had stored it). Not an error, but worth knowing.
	DeliveredWithoutAck int64 `json:"delivered_without_ack"`
	// Bench events of this run that named no message we sent, or reached a
	// user who is not in the room. Should always be 0.
	Unknown      int64 `json:"unknown"`
	GapRecovered int64 `json:"gap_recovered"`
}

// tally is only meaningful once every send has returned.
func (t *tracker) tally() (d Deliveries, delivery, echo []time.Duration) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, m := range s.m {
			for slot, c := range m.count {
				own := int32(slot) == m.sender
				if m.status != msgAccepted {
					if c > 0 {
						d.DeliveredWithoutAck++
					}
					continue
				}
				expected, delivered, lost, dup, lat := &d.Expected, &d.Delivered, &d.Lost, &d.Duplicated, &delivery
				if own {
					expected, delivered, lost, dup, lat = &d.EchoExpected, &d.EchoDelivered, &d.EchoLost, &d.EchoDuplicated, &echo
				}
				*expected++
				if c == 0 {
					*lost++
					continue
				}
				*delivered++
				if c > 1 {
					*dup++
				}
				// Warmup messages are held to the same correctness
				// standard but kept out of the latency figures.
				if !m.warmup {
					*lat = append(*lat, m.first[slot]-m.origin)
				}
			}
		}
		s.mu.Unlock()
	}
	d.Unknown = t.unknown.Load()
	d.GapRecovered = t.recovered.Load()
	return d, delivery, echo
}
