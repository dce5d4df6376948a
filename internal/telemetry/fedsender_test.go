package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestFederationSenderMetrics(t *testing.T) {
	m, h, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	ctx := context.Background()
	m.FederationTxn(ctx, true)
	m.FederationTxn(ctx, true)
	m.FederationTxn(ctx, false)
	m.FederationDelivered(ctx, 40*time.Millisecond)
	m.FederationDropped(ctx, "unlisted", 3)
	m.FederationDropped(ctx, "@alice:example.org said hello", 1)
	err = m.ObserveFederationSender(func(context.Context) FederationSenderState {
		return FederationSenderState{Destinations: 4, Down: 1, QueueDepth: 17, Lag: 90 * time.Second}
	})
	if err != nil {
		t.Fatal(err)
	}
	body := scrape(t, h)
	assertContains(t, body,
		`eimis_federation_transactions_total{result="ok"} 2`,
		`eimis_federation_transactions_total{result="error"} 1`,
		`eimis_federation_delivery_seconds_count 1`,
		`eimis_federation_delivery_seconds_bucket{le="0.05"} 1`,
		`eimis_federation_dropped_total{reason="unlisted"} 3`,
		`eimis_federation_dropped_total{reason="other"} 1`,
		`eimis_federation_destinations 4`,
		`eimis_federation_destinations_down 1`,
		`eimis_federation_queue_depth 17`,
		`eimis_federation_queue_lag_seconds 90`,
	)
	if strings.Contains(body, "alice") {
		t.Error("content leaked into a label")
	}
	var nilM *Metrics
	nilM.FederationTxn(ctx, true)
	nilM.FederationDropped(ctx, "unlisted", 1)
	if err := nilM.ObserveFederationSender(nil); err != nil {
		t.Error(err)
	}
}
