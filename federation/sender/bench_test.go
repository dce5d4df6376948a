package sender

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// BenchmarkEnqueueToDelivered measures a PDU from QueuePDU to its
// transaction accepted by a fake remote (in memory), through the real
// JetStream queue: the sender's own cost, without the network. Run it
// with:
//
//	go test -run '^$' -bench EnqueueToDelivered -benchtime 2000x ./federation/sender/
func BenchmarkEnqueueToDelivered(b *testing.B) {
	e := newEnv(b, []string{remote1}, nil)
	ctx := context.Background()
	pdu := json.RawMessage(`{"type":"m.room.message","content":{"body":"bench"}}`)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := e.sender.QueuePDU(ctx, fmt.Sprintf("$bench%d", i), pdu, remote1); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "all delivered", func() error {
		got, _ := e.remote.received(remote1)
		if len(got) < b.N {
			return fmt.Errorf("%d of %d", len(got), b.N)
		}
		return nil
	})
	b.StopTimer()
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "pdus/s")
	txns := len(e.remote.attempts(remote1))
	b.ReportMetric(float64(b.N)/float64(max(txns, 1)), "pdus/txn")
}
