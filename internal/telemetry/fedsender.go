package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Outbound federation (federation/sender). Labels carry only a result or
// a fixed reason, never a destination, room or event: the set of series
// stays fixed whatever the trust space holds.

// fedDeliveryBuckets cover a healthy peer (tens of milliseconds) up to a
// destination that was down for a while (minutes to hours).
var fedDeliveryBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600}

// FederationSenderState is what the federation gauges read at scrape time.
type FederationSenderState struct {
	Destinations int // destinations with a queue on this instance
	Down         int // of which marked down (last transaction failed)
	// QueueDepth is the undelivered entries over all destinations.
	QueueDepth int64
	// Lag is the age of the oldest entry a sender holds and has not
	// delivered yet (0 when every destination is caught up).
	Lag time.Duration
}

// fedDropReasons are the reasons federation/sender reports; anything else
// is "other", so a label can never take an unbounded value.
var fedDropReasons = map[string]bool{"unlisted": true, "catchup": true, "ephemeral_overflow": true,
	"ephemeral_stale": true, "undecodable": true}

type fedInstruments struct {
	once      sync.Once
	err       error
	txns      metric.Int64Counter
	delivered metric.Float64Histogram
	dropped   metric.Int64Counter
	okOpt     metric.AddOption
	errOpt    metric.AddOption
}

func (m *Metrics) fed() *fedInstruments {
	m.fedInst.once.Do(func() {
		f := &m.fedInst
		meter := m.provider.Meter("github.com/eimis-hub/eimis")
		var e1, e2, e3 error
		f.txns, e1 = meter.Int64Counter("eimis.federation.transactions", // eimis_federation_transactions_total
			metric.WithDescription("Outbound federation transactions attempted, by result (ok, error)."),
			metric.WithUnit("{transaction}"))
		f.delivered, e2 = meter.Float64Histogram("eimis.federation.delivery", // eimis_federation_delivery_seconds
			metric.WithDescription("Lag from queueing a PDU or durable EDU for a destination to its transaction being accepted."),
			metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(fedDeliveryBuckets...))
		f.dropped, e3 = meter.Int64Counter("eimis.federation.dropped", // eimis_federation_dropped_total
			metric.WithDescription("Outbound federation entries not sent, by reason (unlisted, catchup, ephemeral_overflow, ephemeral_stale, undecodable)."),
			metric.WithUnit("{entry}"))
		f.err = errors.Join(e1, e2, e3)
		f.okOpt = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrResult, "ok")))
		f.errOpt = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrResult, "error")))
	})
	if m.fedInst.err != nil {
		return nil
	}
	return &m.fedInst
}

// FederationTxn counts one outbound transaction attempt.
func (m *Metrics) FederationTxn(ctx context.Context, ok bool) {
	if m == nil {
		return
	}
	if f := m.fed(); f != nil {
		if ok {
			f.txns.Add(ctx, 1, f.okOpt)
		} else {
			f.txns.Add(ctx, 1, f.errOpt)
		}
	}
}

// FederationDelivered records the queue-to-accepted lag of one entry.
func (m *Metrics) FederationDelivered(ctx context.Context, lag time.Duration) {
	if m == nil {
		return
	}
	if f := m.fed(); f != nil {
		f.delivered.Record(ctx, lag.Seconds())
	}
}

// FederationDropped counts entries not sent; reason is one of a fixed set.
func (m *Metrics) FederationDropped(ctx context.Context, reason string, n int) {
	if m == nil || n <= 0 {
		return
	}
	if !fedDropReasons[reason] {
		reason = otherLabel
	}
	if f := m.fed(); f != nil {
		f.dropped.Add(ctx, int64(n), metric.WithAttributes(attribute.String(attrReason, reason)))
	}
}

// ObserveFederationSender registers the federation sender's gauges, read
// from state at every scrape. A nil *Metrics does nothing.
func (m *Metrics) ObserveFederationSender(state func(context.Context) FederationSenderState) error {
	if m == nil {
		return nil
	}
	meter := m.provider.Meter("github.com/eimis-hub/eimis")
	dests, err1 := meter.Int64ObservableGauge("eimis.federation.destinations", // eimis_federation_destinations
		metric.WithDescription("Destination servers with an outbound queue on this instance."))
	down, err2 := meter.Int64ObservableGauge("eimis.federation.destinations.down", // eimis_federation_destinations_down
		metric.WithDescription("Destination servers whose last transaction failed (retried with backoff)."))
	depth, err3 := meter.Int64ObservableGauge("eimis.federation.queue.depth", // eimis_federation_queue_depth
		metric.WithDescription("Undelivered outbound federation entries, all destinations."))
	lag, err4 := meter.Float64ObservableGauge("eimis.federation.queue.lag", // eimis_federation_queue_lag_seconds
		metric.WithDescription("Age of the oldest outbound entry held and not yet delivered (0: caught up)."),
		metric.WithUnit("s"))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("telemetry: federation gauges: %w", err)
	}
	_, err := meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		s := state(ctx)
		o.ObserveInt64(dests, int64(s.Destinations))
		o.ObserveInt64(down, int64(s.Down))
		o.ObserveInt64(depth, s.QueueDepth)
		o.ObserveFloat64(lag, s.Lag.Seconds())
		return nil
	}, dests, down, depth, lag)
	if err != nil {
		return fmt.Errorf("telemetry: federation gauges: %w", err)
	}
	return nil
}
