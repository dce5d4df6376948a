package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file gives the federation sender (federation/sender) its queues:
// StreamFedOut, one subject pair and one durable consumer per destination
// server, and a small key-value bucket for the transaction in flight.
//
// The stream is a work queue: an entry disappears once its destination's
// consumer acknowledges it, so the disk holds only what has not been
// delivered yet, bounded per destination by FedOutConfig.MaxPerDestination
// (the oldest entries go first) and by MaxAge.

// FedOutConfig sizes StreamFedOut.
type FedOutConfig struct {
	// MaxAge bounds how long an undelivered entry is kept (default 7 days).
	MaxAge time.Duration
	// MaxPerDestination bounds the entries kept per destination and kind
	// (default 100,000); past it the oldest are discarded. A destination
	// away that long catches up through get_missing_events instead.
	MaxPerDestination int64
}

// FedOut is the handle on StreamFedOut.
type FedOut struct {
	b      *Bus
	stream jetstream.Stream
	kv     jetstream.KeyValue
	epoch  string
}

// FedOutEntry is one queue entry to publish.
type FedOutEntry struct {
	Dest string
	Kind string // FedOutKindPDU or FedOutKindEDU
	// MsgID, when set, de-duplicates the entry within the stream's
	// duplicate window (a fan-out batch published again after a crash).
	MsgID string
	Body  []byte
}

// OpenFedOut creates or updates StreamFedOut and its key-value bucket.
func (b *Bus) OpenFedOut(ctx context.Context, cfg FedOutConfig) (*FedOut, error) {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = defaultMaxAge
	}
	if cfg.MaxPerDestination <= 0 {
		cfg.MaxPerDestination = 100_000
	}
	dup := min(duplicateWindow, cfg.MaxAge)
	stream, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamFedOut,
		Description:       "Outbound federation queues, one subject pair per destination (EIMIS hub)",
		Subjects:          []string{FedOutWildcard},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.WorkQueuePolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            cfg.MaxAge,
		MaxMsgsPerSubject: cfg.MaxPerDestination,
		Duplicates:        dup,
		Replicas:          b.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %s: %w", StreamFedOut, err)
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      KVFedOut,
		Description: "Outbound federation transaction in flight, per destination",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    b.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create key-value %s: %w", KVFedOut, err)
	}
	// The epoch ties transaction IDs (built from stream sequences) to
	// this stream's life: a stream deleted and created again restarts its
	// sequences, and must not reuse IDs a receiver has already seen.
	epoch := fmt.Sprintf("%x", stream.CachedInfo().Created.UnixNano())
	return &FedOut{b: b, stream: stream, kv: kv, epoch: epoch}, nil
}

// Epoch identifies this incarnation of the stream.
func (q *FedOut) Epoch() string { return q.epoch }

// Publish publishes entries with pipelined publishes and returns once all
// are stored, or with the first error (retrying is safe for entries with a
// MsgID).
func (q *FedOut) Publish(ctx context.Context, entries []FedOutEntry) error {
	futs := make([]jetstream.PubAckFuture, 0, len(entries))
	var firstErr error
	for _, e := range entries {
		if e.Kind != FedOutKindPDU && e.Kind != FedOutKindEDU {
			return fmt.Errorf("bus: federation queue kind %q", e.Kind)
		}
		opts := []jetstream.PublishOpt{jetstream.WithExpectStream(StreamFedOut)}
		if e.MsgID != "" {
			opts = append(opts, jetstream.WithMsgID(e.MsgID))
		}
		if len(futs) == publishWindow {
			if err := waitFut(ctx, futs[0]); err != nil {
				firstErr = err
				break
			}
			futs = futs[1:]
		}
		f, err := q.b.js.PublishAsync(FedOutSubject(e.Dest, e.Kind), e.Body, opts...)
		if err != nil {
			firstErr = fmt.Errorf("bus: publish federation entry: %w", err)
			break
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		if err := waitFut(ctx, f); err != nil && firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return firstErr
}

func waitFut(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("bus: publish federation entry: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("bus: publish federation entry: %w", ctx.Err())
	}
}

// PendingDestinations returns the destinations with undelivered entries,
// with their count, so a restarted sender resumes every queue.
func (q *FedOut) PendingDestinations(ctx context.Context) (map[string]uint64, error) {
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(FedOutWildcard))
	if err != nil {
		return nil, fmt.Errorf("bus: %s info: %w", StreamFedOut, err)
	}
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		dest, err := DestFromFedOutSubject(subj)
		if err != nil {
			continue
		}
		out[dest] += n
	}
	return out, nil
}

// Depth returns the undelivered entries of one destination.
func (q *FedOut) Depth(ctx context.Context, dest string) (uint64, error) {
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(FedOutDestFilter(dest)))
	if err != nil {
		return 0, fmt.Errorf("bus: %s info: %w", StreamFedOut, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

// Inflight is the transaction a destination's sender is trying to
// deliver: its ID and the stream sequences of its entries. Entries of the
// queue up to Last that are not in Seqs were skipped (catch-up).
type Inflight struct {
	TxnID string   `json:"txn_id"`
	Last  uint64   `json:"last"`
	Seqs  []uint64 `json:"seqs"`
}

// SaveInflight records dest's transaction in flight (before its first
// attempt).
func (q *FedOut) SaveInflight(ctx context.Context, dest string, in Inflight) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if _, err := q.kv.Put(ctx, DestToken(dest), body); err != nil {
		return fmt.Errorf("bus: save federation txn for %s: %w", dest, err)
	}
	return nil
}

// LoadInflight returns dest's last recorded transaction, or nil.
func (q *FedOut) LoadInflight(ctx context.Context, dest string) (*Inflight, error) {
	e, err := q.kv.Get(ctx, DestToken(dest))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bus: load federation txn for %s: %w", dest, err)
	}
	var in Inflight
	if err := json.Unmarshal(e.Value(), &in); err != nil {
		return nil, fmt.Errorf("bus: federation txn for %s: %w", dest, err)
	}
	return &in, nil
}

// FedQueueConfig tunes one destination's consumer.
type FedQueueConfig struct {
	// MaxAckPending bounds the entries handed out and not yet
	// acknowledged; it must exceed one transaction (150 entries) plus
	// the read-ahead channel (300).
	MaxAckPending int
	// AckWait is how long a delivered entry waits for its acknowledgement
	// before JetStream delivers it again; the sender holds a failing
	// transaction for as long as its destination is down, and ignores
	// entries delivered twice.
	AckWait time.Duration
}

// FedQueue is one destination's queue as its sender reads it.
type FedQueue struct {
	it jetstream.MessagesContext
	ch chan FedOutMsg
	// done is closed when the feed ends; err says why.
	done     chan struct{}
	err      error
	stop     chan struct{}
	stopOnce sync.Once
}

// FedOutMsg is one entry of a destination's queue.
type FedOutMsg struct {
	Seq uint64
	// NumPending is how many entries of the destination were still
	// waiting behind this one when it was delivered (the backlog).
	NumPending uint64
	Kind       string
	Body       []byte
	msg        jetstream.Msg
}

// Ack acknowledges m without waiting; the server then removes it.
func (m FedOutMsg) Ack() error {
	if err := m.msg.Ack(); err != nil {
		return fmt.Errorf("bus: ack federation entry %d: %w", m.Seq, err)
	}
	return nil
}

// AckSync acknowledges m and waits for the server, which then removes it
// from the stream. Acks of one connection are handled in order, so after
// an AckSync every earlier Ack was handled too.
func (m FedOutMsg) AckSync(ctx context.Context) error {
	if err := m.msg.DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) && !errors.Is(err, nats.ErrMsgAlreadyAckd) {
		return fmt.Errorf("bus: ack federation entry %d: %w", m.Seq, err)
	}
	return nil
}

// OpenFedQueue (re)creates dest's durable consumer so delivery starts at
// its first unacknowledged entry at once (rather than after AckWait for
// entries a previous run held), and starts pulling. Only one FedQueue per
// destination may be open in the whole deployment.
func (q *FedOut) OpenFedQueue(ctx context.Context, dest string, cfg FedQueueConfig) (*FedQueue, error) {
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = 600
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = time.Hour
	}
	name := FedOutConsumerName(dest)
	if err := q.b.js.DeleteConsumer(ctx, StreamFedOut, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("bus: federation queue %s: reset consumer: %w", dest, err)
	}
	cons, err := q.b.js.CreateConsumer(ctx, StreamFedOut, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "eimis federation queue " + dest,
		FilterSubject: FedOutDestFilter(dest),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// Work-queue streams require explicit acks (one per entry).
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: federation queue %s: create consumer: %w", dest, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(min(cfg.MaxAckPending, 200)))
	if err != nil {
		return nil, fmt.Errorf("bus: federation queue %s: pull: %w", dest, err)
	}
	// The channel holds a transaction's worth and more, so the sender
	// finds a backlog ready to pack when its previous transaction ends.
	fq := &FedQueue{it: it, ch: make(chan FedOutMsg, 2*(50+100)), done: make(chan struct{}), stop: make(chan struct{})}
	go fq.pump()
	return fq, nil
}

func (fq *FedQueue) pump() {
	defer close(fq.done)
	for {
		msg, err := fq.it.Next()
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted),
			errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, nats.ErrConnectionClosed):
			fq.err = fmt.Errorf("bus: federation queue closed: %w", err)
			return
		case err != nil:
			// Missed heartbeats and the like: the iterator recovers.
			continue
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		kind := msg.Subject()[strings.LastIndexByte(msg.Subject(), '.')+1:]
		m := FedOutMsg{Seq: md.Sequence.Stream, NumPending: md.NumPending, Kind: kind, Body: msg.Data(), msg: msg}
		select {
		case fq.ch <- m:
		case <-fq.stop:
			fq.err = errors.New("bus: federation queue stopped")
			return
		}
	}
}

// Messages delivers the destination's entries in stream order (entries
// delivered again after AckWait may repeat: compare Seq).
func (fq *FedQueue) Messages() <-chan FedOutMsg { return fq.ch }

// Done is closed when the feed ended (Stop, the consumer deleted, the
// bus closed); Err then says why.
func (fq *FedQueue) Done() <-chan struct{} { return fq.done }

// Err is why the feed ended, once Done is closed.
func (fq *FedQueue) Err() error { return fq.err }

// Stop ends the pull; the consumer and its position stay.
func (fq *FedQueue) Stop() {
	// The iterator's Next returns once stopped, but a pump blocked on
	// the channel needs its own signal.
	fq.stopOnce.Do(func() { close(fq.stop) })
	fq.it.Stop()
	<-fq.done
}
