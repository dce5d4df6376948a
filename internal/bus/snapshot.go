package bus

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// snapshotChunk is the chunk size asked of the server and used on restore.
const snapshotChunk = 128 << 10

// Snapshot writes a JetStream snapshot of the event stream (messages and
// durable consumers' positions, the server's own archive format) to w and
// returns the stream's config and state as JSON, which Restore needs. It
// uses the JetStream API the nats CLI's `stream backup` uses, so it works
// on the embedded server and on an external cluster alike.
func (b *Bus) Snapshot(ctx context.Context, w io.Writer) (meta []byte, err error) {
	inbox := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("bus: snapshot: %w", err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(server.JSApiStreamSnapshotRequest{DeliverSubject: inbox, ChunkSize: snapshotChunk})
	resp, err := b.nc.RequestWithContext(ctx, fmt.Sprintf(server.JSApiStreamSnapshotT, StreamEvents), req)
	if err != nil {
		return nil, fmt.Errorf("bus: snapshot request: %w", err)
	}
	var sr server.JSApiStreamSnapshotResponse
	if err := json.Unmarshal(resp.Data, &sr); err != nil {
		return nil, fmt.Errorf("bus: snapshot response: %w", err)
	}
	if sr.Error != nil {
		return nil, fmt.Errorf("bus: snapshot refused: %s", sr.Error.Description)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("bus: snapshot chunk: %w", err)
		}
		if len(m.Data) == 0 {
			// The end, or the server's error in a status header.
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return nil, fmt.Errorf("bus: snapshot failed: %s %s", st, m.Header.Get("Description"))
			}
			break
		}
		if _, err := w.Write(m.Data); err != nil {
			return nil, fmt.Errorf("bus: snapshot write: %w", err)
		}
		if m.Reply != "" {
			// The ack is the server's flow control: one slot per chunk.
			if err := m.Respond(nil); err != nil {
				return nil, fmt.Errorf("bus: snapshot ack: %w", err)
			}
		}
	}
	meta, err = json.Marshal(server.JSApiStreamRestoreRequest{Config: *sr.Config, State: *sr.State})
	if err != nil {
		return nil, fmt.Errorf("bus: snapshot meta: %w", err)
	}
	return meta, nil
}

// Restore replaces the event stream with a snapshot written by Snapshot.
// The stream is deleted first: only run it with every instance stopped.
// It returns the number of messages the restored stream holds.
func (b *Bus) Restore(ctx context.Context, meta []byte, r io.Reader) (uint64, error) {
	var req server.JSApiStreamRestoreRequest
	if err := json.Unmarshal(meta, &req); err != nil {
		return 0, fmt.Errorf("bus: restore meta: %w", err)
	}
	if req.Config.Name != StreamEvents {
		return 0, fmt.Errorf("bus: restore: snapshot is of stream %q, want %s", req.Config.Name, StreamEvents)
	}
	if err := b.js.DeleteStream(ctx, StreamEvents); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
		return 0, fmt.Errorf("bus: restore: delete current stream: %w", err)
	}
	resp, err := b.nc.RequestWithContext(ctx, fmt.Sprintf(server.JSApiStreamRestoreT, StreamEvents), meta)
	if err != nil {
		return 0, fmt.Errorf("bus: restore request: %w", err)
	}
	var rr server.JSApiStreamRestoreResponse
	if err := json.Unmarshal(resp.Data, &rr); err != nil {
		return 0, fmt.Errorf("bus: restore response: %w", err)
	}
	if rr.Error != nil {
		return 0, fmt.Errorf("bus: restore refused: %s", rr.Error.Description)
	}
	br := bufio.NewReaderSize(r, snapshotChunk)
	buf := make([]byte, snapshotChunk)
	for {
		n, rerr := io.ReadFull(br, buf)
		if n > 0 {
			ack, err := b.nc.RequestWithContext(ctx, rr.DeliverSubject, buf[:n])
			if err != nil {
				return 0, fmt.Errorf("bus: restore chunk: %w", err)
			}
			if err := apiError(ack.Data); err != nil {
				return 0, fmt.Errorf("bus: restore chunk: %w", err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return 0, fmt.Errorf("bus: restore read: %w", rerr)
		}
	}
	done, err := b.nc.RequestWithContext(ctx, rr.DeliverSubject, nil)
	if err != nil {
		return 0, fmt.Errorf("bus: restore finish: %w", err)
	}
	var fin server.JSApiStreamCreateResponse
	if err := json.Unmarshal(done.Data, &fin); err != nil {
		return 0, fmt.Errorf("bus: restore result: %w", err)
	}
	if fin.Error != nil {
		return 0, fmt.Errorf("bus: restore failed: %s", fin.Error.Description)
	}
	if b.stream, err = b.js.Stream(ctx, StreamEvents); err != nil {
		return 0, fmt.Errorf("bus: restored stream: %w", err)
	}
	return fin.State.Msgs, nil
}

// apiError decodes a JetStream API error from a reply, if there is one.
func apiError(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	var r server.ApiResponse
	if json.Unmarshal(data, &r) == nil && r.Error != nil {
		return errors.New(r.Error.Description)
	}
	return nil
}
