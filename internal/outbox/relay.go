// Package outbox relays committed events from the store's outbox table to
// NATS JetStream. The outbox row commits with the event, and is deleted
// only after JetStream acknowledged the publish, so a crash between the
// two re-publishes on restart; the event ID as Nats-Msg-Id makes that
// second publish a no-op for consumers.
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

// Relay moves outbox rows to the bus.
type Relay struct {
	st    store.Store
	pub   Publisher
	log   *slog.Logger
	queue chan []store.Event
	// SweepEvery is how often rows left behind (a crash, a NATS outage,
	// another instance that died) are picked up.
	SweepEvery time.Duration
}

// New returns a relay; call Run to start it.
func New(st store.Store, pub Publisher, log *slog.Logger) *Relay {
	return &Relay{st: st, pub: pub, log: log, queue: make(chan []store.Event, 1024), SweepEvery: 2 * time.Second}
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
// committed before a crash are delivered.
func (r *Relay) Run(ctx context.Context) {
	r.sweep(ctx)
	t := time.NewTicker(r.SweepEvery)
	defer t.Stop()
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
		case <-t.C:
			r.sweep(ctx)
		}
	}
}

func (r *Relay) publish(ctx context.Context, evs []store.Event) bool {
	msgs := make([]bus.EventMsg, len(evs))
	positions := make([]int64, len(evs))
	for i, e := range evs {
		msgs[i] = bus.EventMsg{
			RoomID: e.RoomID, EventID: e.EventID, Type: e.Type, Sender: e.Sender,
			StateKey: e.StateKey, Membership: e.Membership, Pos: e.Pos, Data: e.JSON,
		}
		positions[i] = e.Pos
	}
	if err := r.pub.PublishEvents(ctx, msgs); err != nil {
		r.log.Warn("publish to NATS failed, will retry from the outbox", "err", err, "events", len(evs))
		return false
	}
	if err := r.st.DeleteOutbox(ctx, positions); err != nil {
		r.log.Warn("outbox cleanup failed, rows will be re-published (deduplicated)", "err", err)
	}
	return true
}

// sweep publishes every pending outbox row, oldest first.
func (r *Relay) sweep(ctx context.Context) {
	for ctx.Err() == nil {
		pending, err := r.st.PendingOutbox(ctx, 1000)
		if err != nil {
			r.log.Warn("read outbox", "err", err)
			return
		}
		if len(pending) == 0 {
			return
		}
		ids := make([]string, len(pending))
		for i, p := range pending {
			ids[i] = p.EventID
		}
		evs, err := r.st.EventsByID(ctx, ids)
		if err != nil {
			r.log.Warn("read outbox events", "err", err)
			return
		}
		byID := make(map[string]store.Event, len(evs))
		for _, e := range evs {
			byID[e.EventID] = e
		}
		ordered := make([]store.Event, 0, len(pending))
		for _, p := range pending {
			if e, ok := byID[p.EventID]; ok {
				ordered = append(ordered, e)
			}
		}
		if !r.publish(ctx, ordered) || len(pending) < 1000 {
			return
		}
	}
}
