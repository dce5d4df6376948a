package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file gives the bridge gateway its per-bridge durable consumer. It
// differs from Consume in what a bridge needs:
//
//   - The cursor a bridge acknowledges is the JetStream stream sequence, and
//     one acknowledgement covers everything before it (AckAll), so the
//     consumer's ack floor is exactly "the bridge has everything up to here".
//   - The gateway pulls one message at a time (Next), so it can stop pulling
//     when the bridge's socket is full and leave the backlog in JetStream.
//   - Each connection restarts delivery at the ack floor + 1 (the consumer
//     is re-created there), so a reconnecting bridge gets what it missed in
//     stream order at once, instead of waiting for AckWait to redeliver
//     the messages its previous connection had in flight.

// BridgeFeedConfig tunes a bridge's consumer.
type BridgeFeedConfig struct {
	// MaxAckPending bounds the messages JetStream hands out beyond the
	// ack floor; past it the server stops delivering until an ack.
	MaxAckPending int
	// AckWait is how long a delivered, unacknowledged message waits
	// before JetStream redelivers it. The gateway disconnects a bridge
	// that stalls long before that, so it should rarely fire.
	AckWait time.Duration
	// Retention is how long the consumer (and so the bridge's position)
	// survives without a connection. The event stream's own max age
	// bounds the backlog too.
	Retention time.Duration
	// PullBatch is how many messages the client buffers ahead of Next.
	PullBatch int
}

// BridgeFeed is one connection's view of its bridge's durable consumer.
type BridgeFeed struct {
	// Resumed is true when the bridge's consumer existed: delivery starts
	// after its last acknowledged message. False for a new bridge or one
	// away longer than the retention (delivery starts now).
	Resumed bool
	// AckFloor is the stream sequence of the last message acknowledged
	// before this feed opened (0 when none).
	AckFloor uint64

	it jetstream.MessagesContext
}

// FeedMsg is one event for a bridge.
type FeedMsg struct {
	// Seq is the event's stream sequence: the bridge's cursor.
	Seq uint64
	// Stored is when JetStream stored the event.
	Stored time.Time
	Event  EventMsg
	msg    jetstream.Msg
}

// Ack acknowledges m and every earlier message of the feed (AckAll). It
// does not wait for the server.
func (m FeedMsg) Ack() error { return m.msg.Ack() }

// AckSync acknowledges like Ack and waits for the server to confirm, so
// a connection that ends can be sure its position is recorded before the
// next one reads it.
func (m FeedMsg) AckSync(ctx context.Context) error { return m.msg.DoubleAck(ctx) }

// ErrFeedClosed is returned by Next once the feed was stopped, its
// consumer deleted (another connection of the same bridge took over), or
// the bus closed.
var ErrFeedClosed = errors.New("bus: bridge feed closed")

// OpenBridgeFeed (re)creates the bridge's durable consumer at its ack
// floor + 1 and starts pulling. Opening a feed ends any other feed of the
// same bridge (its Next returns ErrFeedClosed), so at most one connection
// consumes a bridge's events, even across hub instances.
func (b *Bus) OpenBridgeFeed(ctx context.Context, bridgeID string, cfg BridgeFeedConfig) (*BridgeFeed, error) {
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = 1024
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 5 * time.Minute
	}
	if cfg.PullBatch <= 0 {
		cfg.PullBatch = 64
	}
	name := BridgeConsumerName(bridgeID)
	f := &BridgeFeed{}
	var start uint64
	cons, err := b.js.Consumer(ctx, StreamEvents, name)
	switch {
	case err == nil:
		f.Resumed = true
		f.AckFloor = cons.CachedInfo().AckFloor.Stream
		start = f.AckFloor + 1
		if err := b.js.DeleteConsumer(ctx, StreamEvents, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("bus: bridge %s: reset consumer: %w", bridgeID, err)
		}
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		info, err := b.stream.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("bus: bridge %s: stream info: %w", bridgeID, err)
		}
		f.AckFloor = info.State.LastSeq
		start = info.State.LastSeq + 1
	default:
		return nil, fmt.Errorf("bus: bridge %s: consumer: %w", bridgeID, err)
	}
	cons, err = b.js.CreateConsumer(ctx, StreamEvents, jetstream.ConsumerConfig{
		Durable:           name,
		Description:       "eimis bridge " + bridgeID,
		FilterSubject:     EventsWildcard,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckAllPolicy,
		AckWait:           cfg.AckWait,
		MaxAckPending:     cfg.MaxAckPending,
		MaxDeliver:        -1,
		InactiveThreshold: cfg.Retention,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: bridge %s: create consumer: %w", bridgeID, err)
	}
	f.it, err = cons.Messages(jetstream.PullMaxMessages(cfg.PullBatch))
	if err != nil {
		return nil, fmt.Errorf("bus: bridge %s: pull: %w", bridgeID, err)
	}
	return f, nil
}

// Next waits up to wait for the next event. It returns (nil, nil) when
// nothing came in time, so the caller can look at its own clocks, and
// ErrFeedClosed when the feed is over.
func (f *BridgeFeed) Next(wait time.Duration) (*FeedMsg, error) {
	for {
		msg, err := f.it.Next(jetstream.NextMaxWait(wait))
		switch {
		case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
			return nil, nil
		case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted),
			errors.Is(err, jetstream.ErrConsumerNotFound):
			return nil, fmt.Errorf("%w: %w", ErrFeedClosed, err)
		case err != nil:
			// Missed heartbeats and the like: the iterator recovers by
			// itself; report it and let the caller decide.
			return nil, err
		}
		md, err := msg.Metadata()
		if err != nil {
			_ = msg.Ack()
			continue
		}
		var ev EventMsg
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			// Only this package writes the stream, so this is a bug; the
			// message is skipped (acknowledged with the next ack).
			continue
		}
		return &FeedMsg{Seq: md.Sequence.Stream, Stored: md.Timestamp, Event: ev, msg: msg}, nil
	}
}

// Stop ends the pull; the consumer stays, with its position.
func (f *BridgeFeed) Stop() { f.it.Stop() }

// DeleteBridgeFeed removes a bridge's consumer (a revoked bridge): its
// backlog position is gone for good.
func (b *Bus) DeleteBridgeFeed(ctx context.Context, bridgeID string) error {
	err := b.js.DeleteConsumer(ctx, StreamEvents, BridgeConsumerName(bridgeID))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("bus: delete bridge %s consumer: %w", bridgeID, err)
	}
	return nil
}
