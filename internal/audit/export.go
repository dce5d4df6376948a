package audit

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// ExportLine is one line of an export: every field the hash covers, so
// an auditor can recompute the chain from the file alone. Empty fields are
// written too; every line has the same keys.
type ExportLine struct {
	Seq       int64  `json:"seq"`
	Time      string `json:"time"` // RFC 3339, UTC, milliseconds
	Actor     string `json:"actor"`
	Action    string `json:"action"`
	RoomID    string `json:"room_id"`
	Target    string `json:"target"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	Decision  string `json:"decision"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id"`
	Instance  string `json:"instance"`
	Source    string `json:"source"`
	Door      string `json:"door,omitempty"`
	PrevHash  string `json:"prev_hash"` // hex
	Hash      string `json:"hash"`      // hex
}

// Export writes the entries with since <= Time < until as JSON lines, in
// seq order, and returns how many it wrote. A zero since or until leaves
// that side open. The read streams: memory does not grow with the trail.
func Export(ctx context.Context, st Reader, since, until time.Time, w io.Writer) (int, error) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n := 0
	_, err := st.ReadAudit(ctx, store.AuditQuery{Since: since, Until: until}, func(e Entry) error {
		if err := enc.Encode(exportLine(e)); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}

func exportLine(e Entry) ExportLine {
	return ExportLine{
		Seq: e.Seq, Time: formatTime(e.Time), Actor: e.Actor, Action: e.Action, RoomID: e.RoomID, Target: e.Target,
		EventID: e.EventID, EventType: e.EventType, Decision: e.Decision, Reason: e.Reason, RequestID: e.RequestID,
		Instance: e.Instance, Source: e.Source, Door: e.Door, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
	}
}
