package bus

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// TestSnapshotRestore snapshots a stream holding events, restores it on a
// fresh embedded server, and checks every event came back.
func TestSnapshotRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := startEmbeddedBus(t, nil)
	const n = 300
	for i := range n {
		if err := src.PublishEvent(ctx, EventMsg{RoomID: "!r:snap.test", EventID: fmt.Sprintf("$e%d", i), Pos: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	meta, err := src.Snapshot(ctx, &buf)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if buf.Len() == 0 {
		t.Fatal("empty snapshot")
	}
	dst := startEmbeddedBus(t, nil)
	got, err := dst.Restore(ctx, meta, &buf)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got != n {
		t.Fatalf("restored stream holds %d messages, want %d", got, n)
	}
	if _, err := dst.Restore(ctx, []byte(`{"config":{"name":"OTHER"}}`), &bytes.Buffer{}); err == nil {
		t.Fatal("restoring another stream's snapshot was accepted")
	}
}
