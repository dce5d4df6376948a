package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eimis-hub/eimis/internal/errclass"
)

// EventMsg is the body of a message on StreamEvents (JSON encoded). It
// carries what notifiers and routers need without a database round trip;
// Data optionally carries the full event for egress consumers.
type EventMsg struct {
	RoomID     string  `json:"room_id"`
	EventID    string  `json:"event_id"`
	Type       string  `json:"type"`
	Sender     string  `json:"sender"`
	StateKey   *string `json:"state_key,omitempty"`
	Membership string  `json:"membership,omitempty"`
	// Pos is the hub's stream position of the event (database order), so
	// receivers can compare it with /sync tokens.
	Pos int64 `json:"pos"`
	// Door is where the event entered the hub (internal/door), for the
	// audit trail.
	Door string `json:"door,omitempty"`
	// Data is the optional full event JSON. It is a RawMessage (still a
	// []byte) so the event is embedded as JSON rather than base64, which
	// keeps the stream readable with the nats CLI; it must be valid JSON.
	Data json.RawMessage `json:"data,omitempty"`
}

const (
	// consumeMaxAckPending bounds the messages a durable consumer has
	// outstanding, so a stuck handler cannot make the server pile up
	// redeliveries and client memory without limit.
	consumeMaxAckPending = 256
	consumeBatch         = 64
	consumeAckWait       = 30 * time.Second
	retryBase            = 250 * time.Millisecond
	retryMax             = time.Minute
	// publishWindow is how many async publishes one PublishEvents call keeps
	// in flight. It is well below asyncMaxPending so concurrent callers do
	// not stall each other.
	publishWindow = 512
)

// ErrTerminal can be wrapped by a Consume handler's error to say that
// retrying is pointless (e.g. the event is malformed for this consumer). The
// message is then terminated instead of redelivered.
var ErrTerminal = errors.New("bus: terminal handler error")

func (m *EventMsg) validate() error {
	if m.RoomID == "" || m.EventID == "" {
		return errors.New("bus: event message needs room_id and event_id")
	}
	return nil
}

func (b *Bus) observe(start time.Time, err error) {
	if b.cfg.OnPublish != nil {
		b.cfg.OnPublish(time.Since(start), err)
	}
}

// PublishEvent publishes one event and waits for JetStream to acknowledge
// it. The event ID is the de-duplication key, so publishing the same event
// again within the duplicate window (e.g. an outbox relay retrying after a
// crash) is acknowledged without storing a second copy.
func (b *Bus) PublishEvent(ctx context.Context, m EventMsg) error {
	if err := m.validate(); err != nil {
		return err
	}
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("bus: encode event %s: %w", m.EventID, err)
	}
	start := time.Now()
	_, err = b.js.Publish(ctx, EventSubject(m.RoomID), body,
		jetstream.WithMsgID(m.EventID), jetstream.WithExpectStream(StreamEvents))
	b.observe(start, err)
	if err != nil {
		return fmt.Errorf("bus: publish event %s: %w", m.EventID, err)
	}
	return nil
}

// PublishEvents publishes a batch with pipelined (async) publishes and
// returns once every message is acknowledged, or with the first error. On
// error some messages may have been stored; retrying the whole batch is safe
// because of de-duplication by event ID.
func (b *Bus) PublishEvents(ctx context.Context, msgs []EventMsg) error {
	type pending struct {
		fut   jetstream.PubAckFuture
		start time.Time
		id    string
	}
	window := make([]pending, 0, min(len(msgs), publishWindow))
	var firstErr error
	wait := func(p pending) error {
		select {
		case <-p.fut.Ok():
			b.observe(p.start, nil)
			return nil
		case err := <-p.fut.Err():
			b.observe(p.start, err)
			return fmt.Errorf("bus: publish event %s: %w", p.id, err)
		case <-ctx.Done():
			return fmt.Errorf("bus: publish event %s: %w", p.id, ctx.Err())
		}
	}

	for i := range msgs {
		m := &msgs[i]
		if err := m.validate(); err != nil {
			firstErr = err
			break
		}
		body, err := json.Marshal(m)
		if err != nil {
			firstErr = fmt.Errorf("bus: encode event %s: %w", m.EventID, err)
			break
		}
		// Sliding window: before adding a message beyond the window, retire
		// the oldest one, so a huge batch never trips the client's stall
		// limit while the pipe stays full.
		if len(window) == publishWindow {
			// Pop before waiting: a future's result channel yields once, so
			// it must not be waited on again below.
			oldest := window[0]
			window = window[1:]
			if err := wait(oldest); err != nil {
				firstErr = err
				break
			}
		}
		start := time.Now()
		fut, err := b.js.PublishAsync(EventSubject(m.RoomID), body,
			jetstream.WithMsgID(m.EventID), jetstream.WithExpectStream(StreamEvents))
		if err != nil {
			b.observe(start, err)
			firstErr = fmt.Errorf("bus: publish event %s: %w", m.EventID, err)
			break
		}
		window = append(window, pending{fut: fut, start: start, id: m.EventID})
	}
	// Even after a failure, wait for what is in flight so the caller knows
	// nothing from this call is still pending when it returns (unless ctx
	// ends first).
	for _, p := range window {
		if err := wait(p); err != nil && firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return firstErr
}

// WatchEvents calls fn for every event published after the call, in stream
// order, until ctx is done. It is meant for per-instance notifiers (waking
// /sync long-polls), so it uses a non-durable ordered consumer: nothing is
// left on the server when the instance goes away, and after a reconnect or
// a NATS server restart the client recreates the consumer at the next
// sequence it has not seen, so no event is skipped or repeated.
//
// WatchEvents blocks: run it in its own goroutine. It returns an error at
// once if the consumer cannot be set up, nil once ctx is done, and ErrClosed
// if the bus is closed while watching. fn runs on the NATS delivery
// goroutine and must not block for long.
func (b *Bus) WatchEvents(ctx context.Context, fn func(EventMsg)) error {
	// Anchor "new" at the current end of the stream rather than using
	// DeliverNew: if the connection drops before the first event arrives,
	// the consumer is recreated from this sequence instead of from "new at
	// reset time", which would lose events published during the outage.
	info, err := b.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("bus: watch events: stream info: %w", err)
	}
	cons, err := b.js.OrderedConsumer(ctx, StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{EventsWildcard},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return fmt.Errorf("bus: watch events: create consumer: %w", err)
	}
	log := b.log.With("consumer", "watch")
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var ev EventMsg
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			log.Error("undecodable event message", "subject", msg.Subject(), errclass.Attr(err))
			return
		}
		fn(ev)
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// The ordered consumer recreates itself after these; they are
		// logged so an outage is visible, not because action is needed.
		log.Warn("event watch consumer error", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("bus: watch events: consume: %w", err)
	}
	return b.waitConsume(ctx, cc)
}

// waitConsume blocks until ctx is done (then stops cc and waits for its
// handler to return) or until the consumption ends on its own.
func (b *Bus) waitConsume(ctx context.Context, cc jetstream.ConsumeContext) error {
	select {
	case <-ctx.Done():
		cc.Stop()
		select {
		case <-cc.Closed():
		case <-b.closedCh:
		}
		return nil
	case <-cc.Closed():
		return ErrClosed
	case <-b.closedCh:
		cc.Stop()
		return ErrClosed
	}
}

// Consume runs fn for each event matching filter (EventsWildcard if empty)
// through the durable consumer named durable, so a restarted consumer
// resumes after the last acknowledged event. A message is acked only after
// fn returns nil; on error it is redelivered after an exponential backoff
// (250ms doubling up to 1m), forever, unless the error wraps ErrTerminal.
//
// fn is called sequentially, but a failed message is retried later while
// the following ones proceed, so per-room order is not guaranteed across
// failures; handlers must tolerate redelivery and reordering.
//
// Consume blocks like WatchEvents: it returns an error at once if setup
// fails, nil when ctx is done, ErrClosed if the bus is closed.
func (b *Bus) Consume(ctx context.Context, durable string, filter string, fn func(ctx context.Context, m EventMsg) error) error {
	if durable == "" {
		return errors.New("bus: consume: durable name required")
	}
	if filter == "" {
		filter = EventsWildcard
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, StreamEvents, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "eimis durable consumer",
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       consumeAckWait,
		MaxAckPending: consumeMaxAckPending,
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("bus: consume %s: create consumer: %w", durable, err)
	}
	log := b.log.With("consumer", durable)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		b.handleDurable(ctx, log, msg, fn)
	},
		jetstream.PullMaxMessages(consumeBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Warn("durable consumer interrupted", "err", err)
		}),
	)
	if err != nil {
		return fmt.Errorf("bus: consume %s: %w", durable, err)
	}
	return b.waitConsume(ctx, cc)
}

func (b *Bus) handleDurable(ctx context.Context, log *slog.Logger, msg jetstream.Msg, fn func(context.Context, EventMsg) error) {
	if ctx.Err() != nil {
		// Shutting down: hand the message back at once so the next
		// instance need not wait for AckWait to expire.
		_ = msg.Nak()
		return
	}
	var ev EventMsg
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		// Only this package writes the stream, so this is a bug; retrying
		// would loop forever.
		log.Error("undecodable event message, terminating", "subject", msg.Subject(), errclass.Attr(err))
		_ = msg.TermWithReason("undecodable")
		return
	}
	err := fn(ctx, ev)
	if err == nil {
		if err := msg.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			log.Warn("ack failed, event will be redelivered", "event_id", ev.EventID, "err", err)
		}
		return
	}
	if errors.Is(err, ErrTerminal) {
		log.Error("handler gave up on event", "event_id", ev.EventID, errclass.Attr(err))
		_ = msg.TermWithReason(errclass.Of(err))
		return
	}
	attempt := uint64(1)
	if md, mdErr := msg.Metadata(); mdErr == nil {
		attempt = md.NumDelivered
	}
	delay := retryDelay(attempt)
	log.Warn("handler failed, retrying", "event_id", ev.EventID, "attempt", attempt, "retry_in", delay, errclass.Attr(err))
	_ = msg.NakWithDelay(delay)
}

// retryDelay is the redelivery delay after the attempt-th failed delivery.
func retryDelay(attempt uint64) time.Duration {
	d := retryBase
	for i := uint64(1); i < attempt && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}
