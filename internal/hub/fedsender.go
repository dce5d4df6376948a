package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/eimis-hub/eimis/federation/sender"
	"github.com/eimis-hub/eimis/internal/telemetry"
)

// StartFederationSender builds the outbound federation sender over the
// hub's bus and store and runs it until runCtx ends (Close). tr is the
// signing federation client (mautrix's *federation.Client satisfies
// sender.Transport) and allow the trust space's list (ServerAllowed). It
// is meant to be called from the federation step of Open, once both
// exist; fanoutOnly is for every instance but one in a multi-instance
// deployment (see sender.Config.FanoutOnly). done is closed once the
// sender stopped: Close should wait for it before closing the bus, so the
// last acknowledgements are not cut off.
func (h *Hub) StartFederationSender(ctx, runCtx context.Context, tr sender.Transport, allow sender.AllowList,
	fanoutOnly bool) (s *sender.Sender, done <-chan struct{}, err error) {
	s, err = sender.New(ctx, sender.Config{
		ServerName: h.Config.ServerName,
		Bus:        h.Bus,
		Store:      h.Store,
		Transport:  tr,
		Allow:      allow,
		Metrics:    h.metrics,
		Log:        h.Log,
		FanoutOnly: fanoutOnly,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("federation sender: %w", err)
	}
	err = h.metrics.ObserveFederationSender(func(ctx context.Context) telemetry.FederationSenderState {
		// A scrape must not hang on a stuck bus.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		g := s.Gauges(ctx)
		return telemetry.FederationSenderState{Destinations: g.Destinations, Down: g.Down, QueueDepth: g.QueueDepth, Lag: g.Lag}
	})
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		if err := s.Run(runCtx); err != nil {
			h.Log.Error("federation sender stopped", "err", err)
		}
	}()
	return s, ch, nil
}
