package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// OpsState is what the operations gauges read at scrape time.
type OpsState struct {
	// NATSPending and NATSAckPending are the durable consumers' backlog
	// by consumer kind (audit, bridge, appservice).
	NATSPending, NATSAckPending map[string]int64
	// NATSLagKnown is false when the backlog could not be read (NATS
	// down): the gauges are then left out rather than reported as 0.
	NATSLagKnown bool
	// BridgesConnected and BridgeDisconnects are this instance's Bridge
	// Protocol connections now and ended since start.
	BridgesConnected  int
	BridgeDisconnects int64
}

// ObserveOps registers the gauges operators alert on (deploy/monitoring):
// eimis_nats_consumer_pending{consumer}, eimis_nats_consumer_ack_pending,
// eimis_bridges_connected and eimis_bridge_disconnects_total.
func (m *Metrics) ObserveOps(state func(ctx context.Context) OpsState) error {
	if m == nil {
		return nil
	}
	meter := m.provider.Meter("github.com/eimis-hub/eimis")
	pending, err1 := meter.Int64ObservableGauge("eimis.nats.consumer.pending", // eimis_nats_consumer_pending
		metric.WithDescription("Accepted events not yet delivered to a durable consumer (audit, bridges, appservices), by consumer kind."))
	ackPending, err2 := meter.Int64ObservableGauge("eimis.nats.consumer.ack_pending", // eimis_nats_consumer_ack_pending
		metric.WithDescription("Events delivered to a durable consumer and not yet acknowledged, by consumer kind."))
	connected, err3 := meter.Int64ObservableGauge("eimis.bridges.connected", // eimis_bridges_connected
		metric.WithDescription("Bridges with a live Bridge Protocol connection on this instance."))
	disconnects, err4 := meter.Int64ObservableCounter("eimis.bridge.disconnects", // eimis_bridge_disconnects_total
		metric.WithDescription("Bridge Protocol connections ended on this instance since it started."))
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return fmt.Errorf("telemetry: ops gauges: %w", err)
		}
	}
	_, err := meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		s := state(ctx)
		if s.NATSLagKnown {
			for k, v := range s.NATSPending {
				o.ObserveInt64(pending, v, metric.WithAttributes(attribute.String("consumer", k)))
			}
			for k, v := range s.NATSAckPending {
				o.ObserveInt64(ackPending, v, metric.WithAttributes(attribute.String("consumer", k)))
			}
		}
		o.ObserveInt64(connected, int64(s.BridgesConnected))
		o.ObserveInt64(disconnects, s.BridgeDisconnects)
		return nil
	}, pending, ackPending, connected, disconnects)
	if err != nil {
		return fmt.Errorf("telemetry: ops gauges: %w", err)
	}
	return nil
}
