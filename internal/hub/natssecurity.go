package hub

import (
	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/config"
)

// natsSecurity maps the NATS security settings onto the bus's.
func natsSecurity(cfg config.Config) (bus.Security, string) {
	return bus.Security{
		User: cfg.NATSUser, Password: cfg.NATSPassword, Token: cfg.NATSToken,
		NKeySeedFile: cfg.NATSNKeySeedFile, CredsFile: cfg.NATSCredsFile,
		CAFile: cfg.NATSCAFile, CertFile: cfg.NATSCertFile, KeyFile: cfg.NATSKeyFile,
	}, cfg.NATSEmbeddedListen
}
