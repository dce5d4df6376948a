package storetest

import (
	"fmt"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

// EventsPerTx is how many events BenchmarkWriteEvents inserts per
// WriteEvents call, the batch size the room server aims for under load.
const EventsPerTx = 100

// BenchmarkWriteEvents measures event ingestion: each iteration is one
// WriteEvents with EventsPerTx InsertEvent calls of ~300 byte events. It
// reports events/s. s must be a fresh store.
func BenchmarkWriteEvents(b *testing.B, s store.Store) {
	ctx := b.Context()
	const room = "!bench:hub"
	err := s.WriteEvents(ctx, func(tx store.EventTx) error {
		return tx.CreateRoom(ctx, store.Room{RoomID: room, Version: "10", Creator: "@alice:hub.example"})
	})
	if err != nil {
		b.Fatal(err)
	}
	var depth int64
	n := 0
	for b.Loop() {
		err := s.WriteEvents(ctx, func(tx store.EventTx) error {
			for range EventsPerTx {
				depth++
				e := ev(room, fmt.Sprintf("$bench-%d", depth), "m.room.message", nil, depth)
				if _, err := tx.InsertEvent(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*EventsPerTx)/b.Elapsed().Seconds(), "events/s")
}
