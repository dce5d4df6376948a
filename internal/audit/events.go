package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eimis-hub/eimis/internal/bus"
)

// ConsumeEvents records every accepted event of the stream until ctx is
// done (then it returns nil) or the bus fails. Events are taken in batches
// (up to 256, or whatever arrived within 20 ms of the first) and recorded
// together, then acknowledged: at 1,000 events/s the trail commits a few
// dozen times a second, which keeps SQLite's single writer free for the
// room server. If recording fails, the batch is redelivered; an entry
// already stored is skipped by its event ID, so nothing is recorded twice.
// Several instances share the durable: JetStream hands each batch to one.
func (t *Trail) ConsumeEvents(ctx context.Context, b *bus.Bus) error {
	err := b.ConsumeBatch(ctx, bus.ConsumerAudit, "", eventBatch, eventLinger, t.recordEvents)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("audit: consume events: %w", err)
	}
	return nil
}

const (
	eventBatch  = 256
	eventLinger = 20 * time.Millisecond
)

func (t *Trail) recordEvents(ctx context.Context, ms []bus.EventMsg) error {
	entries := make([]Entry, len(ms))
	for i, m := range ms {
		entries[i] = EventEntry(m)
	}
	err := t.RecordAll(ctx, entries)
	if errors.Is(err, ErrInvalid) {
		// The batch will never be valid; retrying would loop forever.
		return fmt.Errorf("%w: %w", bus.ErrTerminal, err)
	}
	return err
}

// EventEntry is the entry recorded for an accepted event: its sender as
// actor, Decision allow, Source stream, and an action from its type:
//
//	m.room.member   room.join, room.invite, room.ban, room.knock, and for
//	                leave: room.leave when the member left, room.kick when
//	                someone else made them leave (a kick, a withdrawn
//	                invite or an unban: the stream does not say which);
//	                Target is the member
//	m.room.create   room.create
//	m.room.redaction event.redact
//	anything else   event.send
//
// EventType always carries the event type. Nothing of the content is kept.
func EventEntry(m bus.EventMsg) Entry {
	e := Entry{
		Actor:     m.Sender,
		Action:    ActionEventSend,
		RoomID:    m.RoomID,
		EventID:   m.EventID,
		EventType: m.Type,
		Decision:  Allow,
		Source:    SourceStream,
		Door:      m.Door,
	}
	switch m.Type {
	case "m.room.create":
		e.Action = ActionRoomCreate
	case "m.room.redaction":
		e.Action = ActionEventRedact
	case "m.room.member":
		if m.StateKey != nil {
			e.Target = *m.StateKey
		}
		switch m.Membership {
		case "join":
			e.Action = ActionRoomJoin
		case "invite":
			e.Action = ActionRoomInvite
		case "ban":
			e.Action = ActionRoomBan
		case "knock":
			e.Action = ActionRoomKnock
		case "leave":
			e.Action = ActionRoomLeave
			if e.Target != "" && e.Target != m.Sender {
				e.Action = ActionRoomKick
			}
		}
	}
	return e
}
