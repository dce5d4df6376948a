package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eimis-hub/eimis/internal/errclass"
)

// ConsumeBatch is Consume for handlers that write in bulk (the audit
// trail): it hands fn up to size messages at once, the first as soon as it
// arrives and then whatever else comes within linger, and acks them all
// once fn returns nil. If fn fails, the whole batch is redelivered after a
// backoff (while later events go on, as with Consume); if the error wraps
// ErrTerminal, the batch is terminated. The stream's order is kept within
// and across batches while fn succeeds.
//
// A handler that needs one transaction per event should use Consume; this
// one lets a consumer at 1,000 events/s commit a few dozen times a second
// instead of a thousand.
func (b *Bus) ConsumeBatch(ctx context.Context, durable, filter string, size int, linger time.Duration,
	fn func(ctx context.Context, msgs []EventMsg) error) error {
	if durable == "" {
		return errors.New("bus: consume batch: durable name required")
	}
	if filter == "" {
		filter = EventsWildcard
	}
	if size <= 0 {
		size = consumeBatch
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, StreamEvents, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "eimis durable batch consumer",
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       consumeAckWait,
		MaxAckPending: max(consumeMaxAckPending, 2*size),
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("bus: consume batch %s: create consumer: %w", durable, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(size))
	if err != nil {
		return fmt.Errorf("bus: consume batch %s: %w", durable, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	// Closing the bus must end the loop too, and say so (ErrClosed).
	go func() {
		select {
		case <-b.closedCh:
			it.Stop()
		case <-ctx.Done():
		}
	}()
	defer it.Stop()
	log := b.log.With("consumer", durable)
	msgs := make([]jetstream.Msg, 0, size)
	evs := make([]EventMsg, 0, size)
	for {
		first, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case <-b.closedCh:
				return ErrClosed
			default:
			}
			if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ErrClosed
			}
			return fmt.Errorf("bus: consume batch %s: %w", durable, err)
		}
		msgs = append(msgs[:0], first)
		for len(msgs) < size {
			m, err := it.Next(jetstream.NextMaxWait(linger))
			if err != nil {
				break // linger over (or closing: the batch still gets handled)
			}
			msgs = append(msgs, m)
		}
		evs = evs[:0]
		kept := msgs[:0]
		for _, m := range msgs {
			var ev EventMsg
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				log.Error("undecodable event message, terminating", "subject", m.Subject(), errclass.Attr(err))
				_ = m.TermWithReason("undecodable")
				continue
			}
			evs = append(evs, ev)
			kept = append(kept, m)
		}
		if len(evs) == 0 {
			continue
		}
		err = fn(ctx, evs)
		switch {
		case err == nil:
			for _, m := range kept {
				if err := m.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
					log.Warn("ack failed, event will be redelivered", "err", err)
				}
			}
		case errors.Is(err, ErrTerminal):
			log.Error("handler gave up on a batch", "events", len(kept), errclass.Attr(err))
			for _, m := range kept {
				_ = m.TermWithReason(errclass.Of(err))
			}
		default:
			attempt := uint64(1)
			if md, mdErr := kept[0].Metadata(); mdErr == nil {
				attempt = md.NumDelivered
			}
			delay := retryDelay(attempt)
			if ctx.Err() != nil {
				delay = 0
			} else {
				log.Warn("batch handler failed, retrying", "events", len(kept), "attempt", attempt, "retry_in", delay, errclass.Attr(err))
			}
			for _, m := range kept {
				_ = m.NakWithDelay(delay)
			}
		}
	}
}
