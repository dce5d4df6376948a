package bus

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestExternalServerRestart runs the bus against a NATS server reached over
// TCP, restarts that server (same port, same store) mid-way, and checks that
// the watcher recovers by itself and sees everything published after the
// restart, in order and without repeats.
func TestExternalServerRestart(t *testing.T) {
	storeDir := t.TempDir()
	srv := startNATS(t, storeDir, 0)
	port := serverPort(t, srv)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := Start(ctx, Config{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Name: "ext-test"}, testLogger(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer b.Close()
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	w, done := startWatch(t, ctx, b)

	ev := func(i int) EventMsg {
		return EventMsg{RoomID: fmt.Sprintf("!r%d:ext.test", i%4), EventID: fmt.Sprintf("$x%d", i), Pos: int64(i)}
	}
	for i := range 10 {
		if err := b.PublishEvent(ctx, ev(i)); err != nil {
			t.Fatalf("publish before restart: %v", err)
		}
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(w.snapshot()); n != 10 {
			return fmt.Errorf("received %d/10 before restart", n)
		}
		return nil
	})

	srv.Shutdown()
	srv.WaitForShutdown()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if b.Ping(ctx) == nil {
			return fmt.Errorf("bus still reports ready with the server down")
		}
		return nil
	})
	srv = startNATS(t, storeDir, port)

	// Publishing is retried until the client has reconnected; the event ID
	// de-duplicates any attempt that was stored but whose ack was lost.
	for i := 10; i < 20; i++ {
		checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			defer pcancel()
			return b.PublishEvent(pctx, ev(i))
		})
	}
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := len(w.snapshot()); n < 20 {
			return fmt.Errorf("received %d/20 after restart", n)
		}
		return nil
	})
	got := w.snapshot()
	if len(got) != 20 {
		t.Fatalf("received %d events, want 20", len(got))
	}
	for i, m := range got {
		if m.EventID != ev(i).EventID {
			t.Fatalf("event %d is %s, want %s", i, m.EventID, ev(i).EventID)
		}
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error { return b.Ping(ctx) })

	// A durable consumer created before the restart would be covered by
	// the file store; one created now must see the whole stream.
	rec := newRecorder(nil)
	cctx, ccancel := context.WithCancel(ctx)
	cdone := make(chan error, 1)
	go func() { cdone <- b.Consume(cctx, "ext-durable", "", rec.handle) }()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, acked := rec.state()
		// 20 events plus the probe events used to start the watcher.
		if len(acked) < 20 {
			return fmt.Errorf("durable consumer acked %d", len(acked))
		}
		return nil
	})
	ccancel()
	if err := <-cdone; err != nil {
		t.Fatalf("Consume: %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("WatchEvents: %v", err)
	}
}

func BenchmarkPublishEvents(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			bus := startEmbeddedBus(b, func(c *Config) { c.SyncAlways = sync })
			ctx := context.Background()
			const batch = 1000
			msgs := make([]EventMsg, batch)
			b.ResetTimer()
			n := 0
			for b.Loop() {
				for i := range msgs {
					n++
					msgs[i] = EventMsg{RoomID: fmt.Sprintf("!r%d:bench", n%100), EventID: fmt.Sprintf("$b%d", n), Type: "m.room.message", Pos: int64(n)}
				}
				if err := bus.PublishEvents(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
