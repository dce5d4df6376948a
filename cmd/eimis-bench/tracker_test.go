package main

import (
	"slices"
	"testing"
	"time"
)

func TestBuildTopology(t *testing.T) {
	topo, err := buildTopology(4, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(topo.rooms[0], []int32{0, 1}) || !slices.Equal(topo.rooms[1], []int32{2, 3}) {
		t.Errorf("rooms = %v", topo.rooms)
	}
	// Fewer users than seats: users are shared, never twice in one room.
	topo, err = buildTopology(3, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(topo.rooms[1], []int32{2, 0}) || topo.slot[1][0] != 1 {
		t.Errorf("rooms = %v slots = %v", topo.rooms, topo.slot)
	}
	if got := topo.membersOf(1); !slices.Equal(got, []int32{0, 1}) {
		t.Errorf("membersOf(1) = %v", got)
	}
	for _, bad := range [][3]int{{3, 1, 4}, {3, 1, 1}, {0, 1, 2}, {2, 0, 2}} {
		if _, err := buildTopology(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("buildTopology%v accepted", bad)
		}
	}
}

func TestTrackerAccounting(t *testing.T) {
	// One room of three: users 0, 1, 2 in slots 0, 1, 2; user 3 is in no
	// room.
	topo, err := buildTopology(4, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	tr := newTracker("r", topo)

	// seq 0: sent by user 0 at 100ms, everyone sees it once.
	tr.begin(0, 0, 0, 100*ms, false)
	tr.finish(0, true)
	tr.seen(0, 0, 105*ms, false)
	tr.seen(0, 1, 110*ms, false)
	tr.seen(0, 2, 130*ms, false)

	// seq 1: user 2 never gets it.
	tr.begin(1, 0, 1, 200*ms, false)
	tr.finish(1, true)
	tr.seen(1, 0, 210*ms, false)
	tr.seen(1, 1, 220*ms, false)

	// seq 2: user 1 gets it twice (and a third time; still one pair).
	tr.begin(2, 0, 0, 300*ms, false)
	tr.finish(2, true)
	for _, u := range []int32{0, 1, 1, 1, 2} {
		tr.seen(2, u, 310*ms, false)
	}

	// seq 3: the send failed, yet user 1 received it.
	tr.begin(3, 0, 0, 400*ms, false)
	tr.finish(3, false)
	tr.seen(3, 1, 410*ms, false)

	// seq 4: deliveries before the send returned, then accepted.
	tr.begin(4, 0, 2, 500*ms, false)
	tr.seen(4, 0, 501*ms, false)
	tr.seen(4, 1, 502*ms, false)
	tr.seen(4, 2, 503*ms, false)
	tr.finish(4, true)

	// seq 5: warmup; checked, but no latency samples.
	tr.begin(5, 0, 0, 600*ms, true)
	tr.finish(5, true)
	tr.seen(5, 0, 601*ms, false)
	tr.seen(5, 1, 601*ms, false)
	// user 2 misses warmup seq 5: a warmup loss is still a loss.

	// seq 6: recovered by back-fill; re-reading the same page is not a
	// duplicate, seeing it again in a sync timeline is.
	tr.begin(6, 0, 0, 700*ms, false)
	tr.finish(6, true)
	tr.seen(6, 0, 701*ms, false)
	tr.seen(6, 1, 750*ms, true)
	tr.seen(6, 1, 760*ms, true)
	tr.seen(6, 2, 702*ms, false)
	tr.seen(6, 2, 770*ms, true)

	// seq 7: the sender's own echo is lost and user 2's duplicated.
	tr.begin(7, 0, 1, 800*ms, false)
	tr.finish(7, true)
	tr.seen(7, 0, 810*ms, false)
	tr.seen(7, 2, 810*ms, false)
	tr.seen(7, 2, 811*ms, false)

	// Noise: a seq never sent, and a user outside the room.
	tr.seen(99, 0, time.Second, false)
	tr.seen(0, 3, time.Second, false)

	d, delivery, echo := tr.tally()
	want := Deliveries{
		Expected: 14, Delivered: 12, Lost: 2, Duplicated: 2,
		EchoExpected: 7, EchoDelivered: 6, EchoLost: 1, EchoDuplicated: 0,
		DeliveredWithoutAck: 1, Unknown: 2, GapRecovered: 1,
	}
	if d != want {
		t.Errorf("tally = %+v\nwant    %+v", d, want)
	}
	// Outstanding pairs are exactly the lost ones: seq 1 user 2, seq 5
	// user 2, seq 7 user 1 (echo).
	if got := tr.outstanding.Load(); got != 3 {
		t.Errorf("outstanding = %d, want 3", got)
	}
	slices.Sort(delivery)
	// Receiver pairs with a sample: every delivered one except warmup
	// seq 5's (12 delivered - 1).
	wantDelivery := []time.Duration{1, 2, 2, 10, 10, 10, 10, 10, 10, 30, 50}
	if len(delivery) != len(wantDelivery) {
		t.Fatalf("delivery samples = %v", delivery)
	}
	for i := range wantDelivery {
		if delivery[i] != wantDelivery[i]*ms {
			t.Errorf("delivery samples = %v, want %v ms", delivery, wantDelivery)
			break
		}
	}
	slices.Sort(echo)
	if !slices.Equal(echo, []time.Duration{1 * ms, 3 * ms, 5 * ms, 10 * ms, 20 * ms}) {
		t.Errorf("echo samples = %v", echo)
	}
}
