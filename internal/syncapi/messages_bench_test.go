package syncapi

import (
	"context"
	"fmt"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

// BenchmarkMessagesPaging pages through a room of 10,000 messages with
// /messages, 100 events a page, backwards from the end and forwards from
// the start, as a member who may see all of it. One op is a whole walk.
func BenchmarkMessagesPaging(b *testing.B) {
	a, _ := testAPI(b)
	st := a.st.(store.Store)
	r := newRoom(b, st, "!page:hub")
	r.member("@alice:hub", "join")
	r.hv("shared")
	ctx := context.Background()
	const total, perTx = 10000, 500
	for done := 0; done < total; done += perTx {
		err := st.WriteEvents(ctx, func(tx store.EventTx) error {
			for range perTx {
				r.depth++
				id := fmt.Sprintf("$page-%d", r.depth)
				e := store.Event{EventID: id, RoomID: r.id, Sender: "@alice:hub", Depth: r.depth, OriginTS: 1, Type: "m.room.message",
					JSON: fmt.Appendf(nil, `{"type":"m.room.message","sender":"@alice:hub","room_id":%q,"content":{"body":"%d"},"origin_server_ts":1,"depth":%d}`,
						r.id, r.depth, r.depth)}
				if _, err := tx.InsertEvent(ctx, store.NewEvent{Event: e}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	walk := func(b *testing.B, backward bool) {
		for b.Loop() {
			from, n := "", 0
			for {
				resp, err := a.Messages(ctx, "@alice:hub", r.id, from, backward, 100)
				if err != nil {
					b.Fatal(err)
				}
				n += len(resp.Chunk)
				if resp.End == "" || len(resp.Chunk) == 0 {
					break
				}
				from = resp.End
			}
			if n < total {
				b.Fatalf("walked %d events, want at least %d", n, total)
			}
		}
	}
	b.Run("backward", func(b *testing.B) { walk(b, true) })
	b.Run("forward", func(b *testing.B) { walk(b, false) })
}
