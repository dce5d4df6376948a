package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"go.mau.fi/util/exhttp"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/signingkey"
)

// ClientConfig configures the outbound federation client.
type ClientConfig struct {
	ServerName string
	Key        signingkey.Key
	// List is checked before every request: a server it does not allow
	// is never dialled (federation.ErrServerNameFiltered).
	List Allower
	// CABundle is a PEM file of extra roots trusted beside the system's.
	CABundle string
	// InsecureSkipVerify accepts any certificate: test peers only.
	InsecureSkipVerify bool
	// Timeout bounds a whole request (default 2 minutes: a send_join
	// answer carries a room's full state).
	Timeout time.Duration
}

// NewClient returns mautrix's federation client, configured: it signs
// every request with the hub's key (X-Matrix), verifies certificates
// against the system roots plus CABundle, and refuses every destination
// the list does not allow before resolving or dialling it. Server names
// that are IP literals with a port (127.0.0.1:8448) go straight to that
// address: no DNS, .well-known or SRV.
//
// The list, not the address, is the guard against request forgery: the
// client may dial loopback and private addresses (test peers, a trust
// space on a private network), but only for a listed server.
func NewClient(cfg ClientConfig) (*federation.Client, error) {
	if cfg.List == nil {
		return nil, errors.New("federation client: no federation list")
	}
	tlsCfg, err := ClientTLS(cfg.CABundle, cfg.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	settings := exhttp.SensibleClientSettings.WithGlobalTimeout(timeout).WithTLSConfig(tlsCfg)
	key := &federation.SigningKey{ID: id.KeyID(cfg.Key.ID), Pub: id.SigningKey(cfg.Key.PublicBase64()), Priv: cfg.Key.Private}
	c := federation.NewClient(cfg.ServerName, key, federation.NewInMemoryCache(), settings)
	c.AllowServer = func(server string) bool { return cfg.List.ServerAllowed(server) == nil }
	c.AllowIP = func(net.IP) bool { return true }
	if srt, ok := c.HTTP.Transport.(*federation.ServerResolvingTransport); ok {
		// .well-known lookups verify certificates as the requests do.
		srt.ResolveOpts = &federation.ResolveServerNameOpts{HTTPClient: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}}
	}
	return c, nil
}

// ClientTLS is the outbound TLS configuration: the system roots plus the
// PEM certificates in caBundle, or no verification at all when insecure.
func ClientTLS(caBundle string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		cfg.InsecureSkipVerify = true //nolint:gosec // the operator asked for it by name, and it is logged loudly
		return cfg, nil
	}
	if caBundle == "" {
		return cfg, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pemData, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, fmt.Errorf("federation CA bundle: %w", err)
	}
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("federation CA bundle %s: no PEM certificate in it", caBundle)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
