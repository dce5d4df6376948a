package hub

import (
	"context"
	"time"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/telemetry"
)

// NATSSecurity maps the NATS security settings onto the bus's (serve, and
// the backup command connecting as serve does).
func NATSSecurity(cfg config.Config) (bus.Security, string) {
	return bus.Security{
		User: cfg.NATSUser, Password: cfg.NATSPassword, Token: cfg.NATSToken,
		NKeySeedFile: cfg.NATSNKeySeedFile, CredsFile: cfg.NATSCredsFile,
		CAFile: cfg.NATSCAFile, CertFile: cfg.NATSCertFile, KeyFile: cfg.NATSKeyFile,
	}, cfg.NATSEmbeddedListen
}

// opsState feeds the operations gauges (telemetry.ObserveOps) at scrape
// time. The NATS call is bounded so a scrape during an outage answers.
func (h *Hub) opsState(ctx context.Context) telemetry.OpsState {
	s := telemetry.OpsState{}
	if h.Bridges != nil {
		s.BridgesConnected, s.BridgeDisconnects = h.Bridges.Connected(), h.Bridges.Disconnects()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	lags, err := h.Bus.Lag(ctx)
	if err != nil {
		h.Log.Debug("metrics: NATS consumer lag unavailable", "err", err)
		return s
	}
	s.NATSLagKnown = true
	s.NATSPending, s.NATSAckPending = map[string]int64{}, map[string]int64{}
	for _, l := range lags {
		s.NATSPending[l.Kind], s.NATSAckPending[l.Kind] = l.Pending, l.AckPending
	}
	return s
}

// OldVerifyKeys are the hub's retired signing keys (signing-key rotate),
// for /_matrix/key/v2/server's old_verify_keys. They are read from disk on
// each call: a rotation is rare and the file is tiny.
func (h *Hub) OldVerifyKeys() ([]signingkey.OldKey, error) {
	return signingkey.ReadOld(h.Config.SigningKeyPath)
}
