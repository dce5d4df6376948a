package rooms_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
	"github.com/eimis-hub/eimis/internal/store/postgres"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type nopPublisher struct{}

func (nopPublisher) Accepted([]store.Event) {}

// BenchmarkSend measures the room server alone (build, sign, authorise,
// commit with outbox) with many concurrent senders spread over rooms, on
// both dialects: the ceiling the HTTP and sync layers sit on.
func BenchmarkSend(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			var st store.Store
			var err error
			if dialect == "sqlite" {
				st, err = sqlite.Open(ctx, filepath.Join(b.TempDir(), "db"))
			} else {
				st, err = postgres.Open(ctx, pgtest.URL(b))
			}
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			key, _ := signingkey.Generate()
			s := rooms.New(st, rooms.Config{ServerName: "hub.test", Key: key}, nopPublisher{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			defer s.Close()
			const nRooms = 200
			roomIDs := make([]id.RoomID, nRooms)
			for i := range roomIDs {
				res, err := s.CreateRoom(ctx, rooms.CreateRequest{Creator: "@alice:hub.test"})
				if err != nil {
					b.Fatal(err)
				}
				roomIDs[i] = res.RoomID
			}
			content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": "a message of a typical length for a clinical chat"})
			var n atomic.Int64
			b.SetParallelism(32) // 32×GOMAXPROCS concurrent senders, like many HTTP requests
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					_, err := s.Send(ctx, rooms.Submit{
						RoomID: roomIDs[i%nRooms], Sender: "@alice:hub.test", Type: "m.room.message", Content: content,
						Txn: &store.TxnKey{UserID: "@alice:hub.test", DeviceID: "D", TxnID: fmt.Sprint(i)},
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
