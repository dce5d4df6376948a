// Package outbox relays committed events from the store's outbox table to
// NATS JetStream. The outbox row commits with the event, and is deleted
// only after JetStream acknowledged the publish *and* JetStream has surely
// written it to disk (rows are kept for Retain after the ack, longer than
// the stream's fsync interval). A crash, or a power loss that takes
// JetStream's last second with it, re-publishes from the outbox; the event
// ID as Nats-Msg-Id makes a second publish within the stream's duplicate
// window a no-op.
package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/store"
)

// Publisher is the part of the bus the relay needs.
type Publisher interface {
	PublishEvents(ctx context.Context, msgs []bus.EventMsg) error
}

// Store is the persistence the relay needs: the outbox rows and the
// events they name.
type Store interface {
	PendingOutbox(ctx context.Context, after int64, limit int) ([]store.OutboxEntry, error)
	DeleteOutbox(ctx context.Context, positions []int64) error
	EventsByID(ctx context.Context, eventIDs []string) ([]store.Event, error)
}

// Relay moves outbox rows to the bus.
type Relay struct {
	st    Store
	pub   Publisher
	log   *slog.Logger
	queue chan []store.Event

	// Retain is how long a published row stays in the outbox: it must
	// exceed the JetStream fsync interval.
	Retain time.Duration
	// SweepEvery is how often rows left behind by a failed publish, or by
	// another instance that died, are picked up.
	SweepEvery time.Duration

	published []publishedRow     // oldest first, awaiting deletion
	retained  map[int64]struct{} // the same positions, for the sweep to skip
	dirty     bool               // a publish failed: sweep soon
}

type publishedRow struct {
	pos int64
	at  time.Time
}

// New returns a relay; call Run to start it.
func New(st Store, pub Publisher, log *slog.Logger, retain time.Duration) *Relay {
	return &Relay{
		st: st, pub: pub, log: log, queue: make(chan []store.Event, 1024),
		Retain: retain, SweepEvery: 30 * time.Second, retained: map[int64]struct{}{},
	}
}

// Accepted is the room server's fast path. It never blocks the writer: if
// the queue is full the rows wait for the next sweep.
func (r *Relay) Accepted(evs []store.Event) {
	select {
	case r.queue <- evs:
	default:
		r.log.Warn("outbox queue full, events wait for the sweep", "events", len(evs))
	}
}

// Run publishes until ctx ends. It sweeps once at start so events
// committed (or published but perhaps not yet on disk) before a crash are
// delivered.
func (r *Relay) Run(ctx context.Context) {
	r.sweep(ctx, false)
	sweep := time.NewTicker(r.SweepEvery)
	defer sweep.Stop()
	cleanup := time.NewTicker(max(r.Retain/4, 100*time.Millisecond))
	defer cleanup.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case evs := <-r.queue:
			// Coalesce whatever else is queued into one publish round.
		more:
			for len(evs) < 4096 {
				select {
				case next := <-r.queue:
					evs = append(evs, next...)
				default:
					break more
				}
			}
			r.publish(ctx, evs)
		case <-cleanup.C:
			r.cleanup(ctx, time.Now().Add(-r.Retain))
		case <-retry.C:
			if r.dirty {
				r.sweep(ctx, true)
			}
		case <-sweep.C:
			r.sweep(ctx, true)
		}
	}
}

func (r *Relay) publish(ctx context.Context, evs []store.Event) bool {
	if len(evs) == 0 {
		return true
	}
	msgs := make([]bus.EventMsg, len(evs))
	for i, e := range evs {
		msgs[i] = bus.EventMsg{
			RoomID: e.RoomID, EventID: e.EventID, Type: e.Type, Sender: e.Sender,
			StateKey: e.StateKey, Membership: e.Membership, Pos: e.Pos, Door: e.Door, Data: e.JSON,
		}
	}
	if err := r.pub.PublishEvents(ctx, msgs); err != nil {
		r.log.Warn("publish to NATS failed, will retry from the outbox", "err", err, "events", len(evs))
		r.dirty = true
		return false
	}
	now := time.Now()
	for _, e := range evs {
		if _, ok := r.retained[e.Pos]; !ok {
			r.retained[e.Pos] = struct{}{}
			r.published = append(r.published, publishedRow{pos: e.Pos, at: now})
		}
	}
	return true
}

// cleanup deletes rows published before cutoff, in one statement.
func (r *Relay) cleanup(ctx context.Context, cutoff time.Time) {
	n := 0
	for n < len(r.published) && r.published[n].at.Before(cutoff) {
		n++
	}
	if n == 0 {
		return
	}
	positions := make([]int64, n)
	for i, p := range r.published[:n] {
		positions[i] = p.pos
	}
	if err := r.st.DeleteOutbox(ctx, positions); err != nil {
		r.log.Warn("outbox cleanup failed, will retry", "err", err)
		return
	}
	for _, p := range positions {
		delete(r.retained, p)
	}
	r.published = append(r.published[:0], r.published[n:]...)
}

// sweep publishes pending outbox rows, oldest first. With skipRetained it
// leaves out rows this relay already published and keeps on purpose.
func (r *Relay) sweep(ctx context.Context, skipRetained bool) {
	r.dirty = false
	var after int64
	for ctx.Err() == nil {
		pending, err := r.st.PendingOutbox(ctx, after, 1000)
		if err != nil {
			r.log.Warn("read outbox", "err", err)
			r.dirty = true
			return
		}
		var ids []string
		for _, p := range pending {
			if _, ok := r.retained[p.Pos]; ok && skipRetained {
				continue
			}
			ids = append(ids, p.EventID)
		}
		if len(ids) > 0 {
			evs, err := r.st.EventsByID(ctx, ids)
			if err != nil {
				r.log.Warn("read outbox events", "err", err)
				r.dirty = true
				return
			}
			if !r.publish(ctx, evs) {
				return
			}
		}
		if len(pending) < 1000 {
			return
		}
		after = pending[len(pending)-1].Pos
	}
}
