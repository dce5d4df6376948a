package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/eimis-hub/eimis/internal/bus"
)

// DurablePrefix names the trail's durable JetStream consumers: one per
// event partition, "audit-00" to "audit-15". Every hub instance uses the
// same names, so the instances share the work and each event is handled
// by one of them (and stored once even when JetStream redelivers it).
const DurablePrefix = "audit-"

// ConsumeEvents records every accepted event of the stream until ctx is
// done (then it returns nil) or the bus fails. A message is acknowledged
// only once its entry is committed; if recording fails it is redelivered.
//
// It runs one durable consumer per event partition rather than one for the
// whole stream: bus.Consume hands a consumer's messages to its handler one
// at a time, acknowledging each after the handler returns, so a single
// consumer would cost one transaction per event. Partitions run side by
// side, and their entries share the trail's group commits. A room stays in
// one partition, so its entries keep the stream's order (except after a
// failed attempt, which is retried later).
func (t *Trail) ConsumeEvents(ctx context.Context, b *bus.Bus) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for p := range bus.EventPartitions {
		wg.Go(func() {
			durable := fmt.Sprintf("%s%02d", DurablePrefix, p)
			// A consumer still being set up when ctx ends fails rather than
			// returning nil; that is shutdown too.
			if err := b.Consume(ctx, durable, bus.PartitionWildcard(p), t.recordEvent); err != nil && parent.Err() == nil {
				// One partition unrecorded would go unnoticed: stop them
				// all, and report the failure that came first, not the
				// cancellations it caused.
				once.Do(func() {
					first = fmt.Errorf("audit: consume events: %w", err)
					cancel()
				})
			}
		})
	}
	wg.Wait()
	return first
}

func (t *Trail) recordEvent(ctx context.Context, m bus.EventMsg) error {
	err := t.Record(ctx, EventEntry(m))
	if errors.Is(err, ErrInvalid) {
		// The entry will never be valid; retrying would loop forever.
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
