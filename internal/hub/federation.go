package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"maunium.net/go/mautrix/federation"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/federation/keys"
	"github.com/eimis-hub/eimis/federation/transport"
	"github.com/eimis-hub/eimis/federation/trustlist"
	"github.com/eimis-hub/eimis/internal/clientapi"
	"github.com/eimis-hub/eimis/internal/httpapi"
)

// Version is what GET /_matrix/federation/v1/version answers.
const serverSoftware = "eimis-hub"

// Federation is the Server-Server API's parts, built by openFederation
// when federation_listen is set (Hub.Fed is nil otherwise).
//
// Mounting: a federation package (inbound /send, make_join/send_join,
// backfill…) appends its []fedctx.Route to Routes after hub.Open and
// before Hub.Serve, which builds the listener's handler from Routes once.
// Routes are served behind X-Matrix auth unless Public, with the
// authenticated origin in the request's context (fedctx.Origin) and the
// door federation:<origin> (door.From).
type Federation struct {
	// List is the signed federation list in force: ServerAllowed for
	// every server checked, UserAllowed for remote users.
	List *trustlist.Watcher
	// Keys fetches and keeps remote servers' keys; Keys.KeyFunc() has
	// the room server's rooms.KeyFunc shape (already wired into Rooms).
	Keys *keys.Ring
	// KeyServer serves this hub's keys and the notary.
	KeyServer *keys.Server
	// Client is the outbound client: signs every request, and never
	// dials a server List does not allow.
	Client *federation.Client
	// Auth is the X-Matrix authentication the listener puts in front of
	// every non-public route.
	Auth *transport.Authenticator
	// Routes are mounted on the federation listener by Serve: the key
	// server's and /version already; append yours before Serve.
	Routes []fedctx.Route

	ln     net.Listener
	cert   tls.Certificate
	served bool
	mu     sync.Mutex
}

// openFederation builds the trust space on the network when federation
// is on: the signed list (refreshed every trust reload interval), the
// outbound client, the key ring and key server, the X-Matrix
// authentication, and the HTTPS listener (bound now, so a port in use
// fails the start; served by Serve). After openOperators: the list is
// checked against the operator registry.
func (h *Hub) openFederation(ctx, runCtx context.Context) error {
	cfg, log := h.Config, h.Log.With("component", "federation")
	if !cfg.FederationEnabled() {
		return nil
	}
	if cfg.FederationInsecureSkipVerify {
		log.Warn("INSECURE: federation_insecure_skip_verify is on: peers' TLS certificates are NOT verified; anyone on the path can impersonate a peer. For test peers on loopback only.")
	}
	pub, err := trustlist.ParsePublicKey(cfg.FederationAuthorityKey)
	if err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	lcfg := trustlist.Config{File: cfg.FederationList, URL: cfg.FederationListURL, AuthorityKey: pub,
		Grace: cfg.FederationListGrace, Interval: cfg.TrustReloadInterval, Operators: h.Operators,
		Practitioners: h.Policy, Log: log}
	if cfg.FederationListURL != "" {
		lcfg.CacheFile = cfg.FederationListCache()
	}
	f := &Federation{}
	if f.List, err = trustlist.New(lcfg); err != nil {
		return err
	}
	if err := f.List.Refresh(ctx); err != nil {
		// Fail closed, but start: readiness says why, and the next
		// refresh may bring a valid list.
		log.Error("no valid federation list at start: every federation request is refused until one is loaded", "err", err)
	}
	go f.List.Run(runCtx)

	if f.Client, err = transport.NewClient(transport.ClientConfig{ServerName: cfg.ServerName, Key: h.Key, List: f.List,
		CABundle: cfg.FederationCABundle, InsecureSkipVerify: cfg.FederationInsecureSkipVerify}); err != nil {
		return fmt.Errorf("federation client: %w", err)
	}
	f.Keys = keys.NewRing(h.Store, f.Client, cfg.ServerName, h.Key)
	f.KeyServer = &keys.Server{ServerName: cfg.ServerName, Key: h.Key, Ring: f.Keys, List: f.List, Log: log}
	f.Auth = &transport.Authenticator{ServerName: cfg.ServerName, List: f.List, Keys: f.Keys, Refusals: h.Refusals, Log: log}
	f.Routes = append(f.KeyServer.Routes(), transport.VersionRoute(serverSoftware, "0"))

	certFile, keyFile, selfSigned := cfg.FederationTLSFiles()
	if selfSigned {
		var created bool
		if f.cert, created, err = transport.LoadOrCreateSelfSigned(certFile, keyFile, cfg.ServerName); err != nil {
			return fmt.Errorf("federation TLS: %w", err)
		}
		if created {
			log.Warn("created a self-signed federation TLS certificate (development only: peers must skip verification or trust it)", "cert", certFile)
		}
	} else if f.cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fmt.Errorf("federation TLS: %w", err)
	}
	if f.ln, err = net.Listen("tcp", cfg.FederationListen); err != nil {
		return fmt.Errorf("federation listen: %w", err)
	}
	h.Fed = f
	return nil
}

// readiness adds the federation list to the readiness checks when
// federation is on: not ready while no valid list is in force.
func (h *Hub) readiness(deps map[string]clientapi.Readiness) map[string]clientapi.Readiness {
	if h.Fed != nil {
		deps["federation"] = h.Fed.List
	}
	return deps
}

// serveFederation serves the federation listener (when federation is on)
// until ctx ends; stop waits for it to have shut down.
func (h *Hub) serveFederation(ctx context.Context) (stop func(), err error) {
	f := h.Fed
	if f == nil {
		return func() {}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.served {
		return nil, errors.New("federation listener already served")
	}
	mux, err := transport.Handler(f.Auth, f.Routes)
	if err != nil {
		return nil, err
	}
	f.served = true
	handler := httpapi.WithRequestID(h.metrics.Middleware(func(r *http.Request) string { return r.Pattern }, mux))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := transport.Serve(ctx, f.ln, handler, f.cert); err != nil && ctx.Err() == nil {
			h.Log.Error("federation listener stopped", "err", err)
		}
	}()
	h.Log.Info("federation listening", "addr", f.ln.Addr().String(), "server_name", h.Config.ServerName)
	return func() { <-done }, nil
}

// closeFederation releases a listener that was bound but never served.
func (h *Hub) closeFederation() {
	if f := h.Fed; f != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.served && f.ln != nil {
			_ = f.ln.Close()
		}
	}
}
