// Package hub assembles the hub's components from a config: store, bus,
// outbox relay, room server, sync API and Client-Server API, and runs the
// HTTP server. It is the only package that knows all of them.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/bridges/appservice"
	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/adminapi"
	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/clientapi"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/directory/fhir"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/media"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/outbox"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/psc"
	"github.com/eimis-hub/eimis/internal/ratelimit"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/postgres"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
	"github.com/eimis-hub/eimis/internal/syncapi"
	"github.com/eimis-hub/eimis/internal/telemetry"
	"github.com/eimis-hub/eimis/internal/trust"
)

// OpenStore opens the configured database and applies migrations.
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	kind, dsn := cfg.DatabaseKind()
	switch kind {
	case config.KindPostgres:
		return postgres.Open(ctx, dsn)
	case config.KindSQLite:
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		return sqlite.Open(ctx, strings.TrimPrefix(dsn, "file:"))
	}
	return nil, fmt.Errorf("unknown database %q", cfg.Database)
}

// Hub is a running hub instance.
type Hub struct {
	Config config.Config
	Log    *slog.Logger
	Store  store.Store
	Bus    *bus.Bus
	Rooms  *rooms.Server
	Sync   *syncapi.API
	IDs    *identity.Service
	Dir    *directory.Atomic
	Policy *policy.Engine
	Trust  *trust.Keeper
	// Operators is the operator allow-list bridges and federation are
	// checked against.
	Operators *operators.Registry
	Audit     *audit.Trail
	Media     *media.Service
	// Bridges is the Bridge Protocol gateway (vendors' messengers).
	Bridges *gateway.Gateway
	Key     signingkey.Key
	Handler http.Handler
	// Fed is the Server-Server API (federation.go); nil when off.
	Fed *Federation

	metrics        *telemetry.Metrics
	metricsHandler http.Handler
	relay          *outbox.Relay
	// psc is Pro Santé Connect, when configured.
	psc *psc.Provider

	// Appservices is the Matrix Application Service API (bridges).
	Appservices *appservice.Service
	// Consent decides and records practitioners' consent to the apps
	// (bridges, appservices) acting for them.
	Consent *consent.Service

	// Limits are this instance's rate limits (limits.go); Refusals is
	// the one path every refusal takes.
	Limits   *ratelimit.Limits
	Refusals door.Recorder

	appservicesDone chan struct{}

	// fed is the room side of federation (fedrooms.go).
	fed fedRooms

	cancel        context.CancelFunc
	relayDone     chan struct{}
	unsubRevoked  func()
	unsubBindings func()
}

// Open builds every component, in the order of the steps below: each
// step stands on the ones before it. Close releases them.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (h *Hub, err error) {
	h = &Hub{Config: cfg, Log: log}
	runCtx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	// ctx bounds the start; runCtx lives until Close and carries the
	// goroutines the steps start.
	for _, step := range []func(ctx, runCtx context.Context) error{
		h.openCore,            // signing key, metrics, store, bus, outbox relay, sync API
		h.openAudit,           // the audit trail and its event consumer (egress)
		h.openRooms,           // directory, policy, room server
		h.openTrust,           // identities, Pro Santé Connect, consent
		h.openAppservices,     // registrations and pushers (egress), before the trust keeper
		h.openKeeper,          // the trust keeper and its sweeps
		h.openAnnouncements,   // revocations and binding changes between instances
		h.openOperators,       // the operator allow-list
		h.openFederation,      // federation list, keys, client, listener (federation.go)
		h.openDoors,           // Client-Server API, media, bridge gateway, HTTP handler
		h.openFederationRooms, // the room side of federation on the listener (fedrooms.go)
	} {
		if err := step(ctx, runCtx); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// openCore opens what every other component stands on: the signing key,
// the metrics, the store, the bus with its outbox relay, and the sync
// API.
func (h *Hub) openCore(ctx, runCtx context.Context) error {
	cfg, log := h.Config, h.Log
	key, generated, err := signingkey.LoadOrGenerate(cfg.SigningKeyPath)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	if generated {
		log.Info("generated a new signing key", "path", cfg.SigningKeyPath, "key_id", key.ID)
	}
	h.Key = key

	metrics, metricsHandler, err := telemetry.NewMetrics()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	h.metrics, h.metricsHandler = metrics, metricsHandler
	h.Refusals = refusals{h}

	if h.Store, err = OpenStore(ctx, cfg); err != nil {
		return fmt.Errorf("open store: %w", err)
	}

	bcfg := bus.DefaultConfig(cfg.NATSStoreDir())
	bcfg.URL = cfg.NATS
	bcfg.MaxAge = cfg.NATSStreamMaxAge
	if cfg.NATSReplicas > 0 {
		bcfg.Replicas = cfg.NATSReplicas
	}
	bcfg.Name = "eimis-" + cfg.ServerName
	bcfg.OnPublish = metrics.PublishObserved
	bcfg.Security, bcfg.EmbeddedListen = NATSSecurity(cfg)
	bcfg.SyncAlways = cfg.NATSSyncInterval == 0
	bcfg.SyncInterval = cfg.NATSSyncInterval
	if h.Bus, err = bus.Start(ctx, bcfg, log); err != nil {
		return fmt.Errorf("start NATS: %w", err)
	}

	// Published rows outlive JetStream's fsync interval (for an external
	// cluster, the operator's sync_interval should be at most this).
	retain := max(5*time.Second, 3*cfg.NATSSyncInterval)
	h.relay = outbox.New(h.Store, h.Bus, log.With("component", "outbox"), retain)
	h.relayDone = make(chan struct{})
	go func() {
		defer close(h.relayDone)
		h.relay.Run(runCtx)
	}()

	if h.Sync, err = syncapi.New(runCtx, h.Store, h.Bus, log.With("component", "sync"), cfg.SyncMaxTimeout,
		func() { metrics.SyncWakeups(runCtx, 1) }); err != nil {
		return fmt.Errorf("sync API: %w", err)
	}
	return nil
}

// openAudit opens the audit trail, which every later step writes to, and
// starts its consumer of the accepted events and its retention.
func (h *Hub) openAudit(_, runCtx context.Context) error {
	cfg, log := h.Config, h.Log
	instance, _ := os.Hostname()
	h.Audit = audit.New(h.Store, log, instance+" "+cfg.Listen)
	go func() {
		// The accepted-event stream is audited by durable consumers, so an
		// instance that was down catches up; a bus failure is retried.
		for runCtx.Err() == nil {
			if err := h.Audit.ConsumeEvents(runCtx, h.Bus); err != nil && runCtx.Err() == nil {
				log.Warn("audit consumer stopped; retrying", "err", err)
				select {
				case <-runCtx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	go h.Audit.RunRetention(runCtx, cfg.AuditRetention, 0)
	return nil
}

// openRooms opens the health directory's holder, the trust space's
// policy, and the room server it gates.
func (h *Hub) openRooms(_, runCtx context.Context) error {
	cfg, metrics := h.Config, h.metrics
	h.Dir = &directory.Atomic{}
	h.Policy = policy.New(cfg.ServerName, h.Dir, cfg.Professions())
	h.Rooms = rooms.New(h.Store, rooms.Config{
		ServerName: cfg.ServerName, Key: h.Key, DefaultVersion: id.RoomVersion(cfg.RoomVersion),
		OnAccepted: func(evType string) { metrics.EventAccepted(runCtx, evType) },
		Gate:       fedGate{policy: h.Policy, fed: &h.fed, server: cfg.ServerName},
		RemoteKeys: h.fed.remoteKeys,
	}, fanout{h.Sync, h.relay}, h.Log.With("component", "rooms"))
	return nil
}

// openTrust opens the identities (sessions and their admission by the
// policy), Pro Santé Connect when configured, and the practitioners'
// consent to the apps acting for them.
func (h *Hub) openTrust(ctx, _ context.Context) error {
	cfg, log := h.Config, h.Log
	h.IDs = identity.New(h.Store, cfg.ServerName, 0)
	h.IDs.SetAdmission(h.Policy)
	// Pro Santé Connect, when configured, is one way to prove consent.
	if cfg.PSCIssuer != "" {
		p, err := psc.New(ctx, psc.Config{
			Issuer: cfg.PSCIssuer, ClientID: cfg.PSCClientID, ClientSecret: cfg.PSCClientSecret,
			RedirectURL: cfg.PublicBaseURL + clientapi.PSCCallbackPath, ACRValues: cfg.PSCACRValues,
			HTTPClient: &http.Client{Timeout: 15 * time.Second},
		})
		if err != nil {
			return fmt.Errorf("pro santé connect: %w", err)
		}
		h.psc = p
	}
	h.Consent = consent.New(consent.Config{
		Store: h.Store, LinkCodeTTL: cfg.BindingLinkCodeTTL, VerifyPSC: verifyPSCProof(h.psc),
		BridgeRequirePSC: cfg.BridgeRequirePSCProof, BridgeInsecure: cfg.BridgeBindWithoutConsentInsecure,
		Audit: h.record, OnChange: h.bindingChanged, Log: log.With("component", "consent"),
	})
	if cfg.BridgeBindWithoutConsentInsecure {
		log.Warn("INSECURE: bridge_bind_without_consent_insecure is on: any bridge may act for any practitioner without their consent; for demos and tests only")
	}
	return nil
}

// openAppservices loads the application services and starts their
// pushers. Before the trust keeper: its first sweep must know the
// puppets and the consents to them.
func (h *Hub) openAppservices(ctx, runCtx context.Context) error {
	cfg, log := h.Config, h.Log
	h.Appservices = appservice.New(appservice.Config{ServerName: cfg.ServerName, Store: h.Store, Bus: h.Bus,
		Policy: h.Policy, IDs: h.IDs, Log: log.With("component", "appservice"), ReloadInterval: cfg.TrustReloadInterval,
		Consent: h.Consent, Recorder: h.Refusals,
		OnConsentWithdrawn: func(context.Context) {
			// The withdrawn puppets are now refused for good: the sweep
			// writes their leaves, so their appservice stops receiving
			// the rooms' events.
			go func() {
				if h.Trust == nil {
					return // still starting: the initial sweep covers it
				}
				if _, err := h.Trust.Sweep(runCtx); err != nil && runCtx.Err() == nil {
					log.Warn("trust sweep after a withdrawn consent", "err", err)
				}
			}()
		}})
	if err := h.Appservices.Load(ctx); err != nil {
		return err
	}
	h.IDs.SetAppservices(h.Appservices)
	h.Sync.Notifier().SetEphemeralHooks(h.Appservices.TypingChanged, h.Appservices.RoomChanged)
	h.appservicesDone = make(chan struct{})
	go func() { defer close(h.appservicesDone); h.Appservices.Run(runCtx) }()
	return nil
}

// openKeeper opens the trust keeper, which holds the directory and acts
// on its changes, and starts its sweeps and the FHIR synchronisation.
func (h *Hub) openKeeper(ctx, runCtx context.Context) error {
	cfg, log := h.Config, h.Log
	h.Trust = trust.New(trust.Config{
		Store: h.Store, Dir: h.Dir, Policy: h.Policy, Rooms: h.Rooms, IDs: h.IDs,
		Log: log.With("component", "trust"), Metrics: h.metrics,
		OnRemoved: func(ctx context.Context, r trust.Removal) {
			h.record(ctx, audit.Entry{Actor: audit.ActorHub, Action: audit.ActionDirectoryDeactivate, Target: string(r.UserID),
				Decision: audit.Deny, Reason: fmt.Sprintf("%s rooms_left=%d", r.Code, len(r.Rooms))})
		},
		OnSynced: func(ctx context.Context, full bool, practitioners, inactivated int, err error) {
			e := audit.Entry{Actor: audit.ActorHub, Action: audit.ActionDirectorySync, Decision: audit.Allow,
				Reason: fmt.Sprintf("fhir full=%v practitioners=%d inactivated=%d", full, practitioners, inactivated)}
			if err != nil {
				e.Decision, e.Reason = audit.Deny, "fhir sync failed"
			}
			h.record(ctx, e)
		},
	})
	if err := h.Trust.Load(ctx); err != nil {
		return err
	}
	if h.Dir.Load().Len() == 0 {
		log.Warn("no health directory loaded: every participant is refused until one is imported (eimis-hub directory import) or synced (directory_fhir_url)")
	}
	if err := h.metrics.ObserveDirectory(h.Trust.State); err != nil {
		return err
	}
	// Changes made while this instance was down (an import, a changed
	// allowed_professions) are acted on at start, not at the next change.
	go func() {
		if _, err := h.Trust.Sweep(runCtx); err != nil && runCtx.Err() == nil {
			log.Warn("initial trust sweep", "err", err)
		}
	}()
	go h.Trust.Run(runCtx, cfg.TrustReloadInterval)
	if cfg.DirectoryFHIRURL != "" {
		// Retries ride out the gateway's rate limiting (429 with
		// Retry-After) within one run instead of failing it.
		fc, err := fhir.New(fhir.Config{BaseURL: cfg.DirectoryFHIRURL, APIKey: cfg.DirectoryFHIRAPIKey, MaxRetries: 5})
		if err != nil {
			return fmt.Errorf("directory FHIR client: %w", err)
		}
		go h.Trust.RunFHIR(runCtx, fc, cfg.DirectoryFHIRInterval, cfg.DirectoryFHIRFullInterval)
	}
	return nil
}

// openAnnouncements wires what instances tell each other over core NATS:
// revoked sessions and changed bindings.
func (h *Hub) openAnnouncements(_, runCtx context.Context) error {
	log := h.Log
	h.IDs.OnRevoke(func(r identity.Revocation) {
		data, _ := json.Marshal(r)
		if err := h.Bus.PublishEphemeral(bus.SubjectRevoked, data); err != nil {
			log.Warn("announce revocation", "err", err)
		}
	})
	unsubRevoked, err := h.Bus.SubscribeEphemeral(bus.SubjectRevoked, func(data []byte) {
		var r identity.Revocation
		if json.Unmarshal(data, &r) == nil && r.UserID != "" {
			h.IDs.Revoked(r)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe revocations: %w", err)
	}
	h.unsubRevoked = unsubRevoked
	if h.unsubBindings, err = h.Bus.SubscribeEphemeral(bus.SubjectBindings, func(data []byte) {
		var c bindingAnnouncement
		if json.Unmarshal(data, &c) == nil && c.UserID != "" {
			h.applyBindingChange(runCtx, c)
		}
	}); err != nil {
		return fmt.Errorf("subscribe binding changes: %w", err)
	}
	return nil
}

// openOperators loads the operator allow-list bridges (and federation)
// are checked against, and watches it.
func (h *Hub) openOperators(ctx, runCtx context.Context) error {
	log := h.Log
	h.Operators = operators.New(h.Store, log)
	h.Operators.SetOwnServerNames(h.Config.ServerName)
	if err := h.Operators.Load(ctx); err != nil {
		return fmt.Errorf("operators: %w", err)
	}
	h.Operators.OnChange(func(c operators.Change) {
		log.Info("operator status", "operator", c.Operator.ID, "old", c.Old, "new", c.New, "actor", c.Actor)
		e, ok := audit.OperatorEntry(c)
		if !ok || c.Actor == "" {
			// Changes made elsewhere (the CLI, another instance) were
			// audited where they were made.
			return
		}
		h.record(runCtx, e)
	})
	go h.Operators.Watch(runCtx, h.Config.TrustReloadInterval)
	return nil
}

// openDoors opens the doors into the hub (the Client-Server API, the
// media repository, the bridge gateway, the admin, consent and
// appservice APIs) and the HTTP handler in front of them all.
func (h *Hub) openDoors(_, _ context.Context) error {
	api, err := h.openClientAPI()
	if err != nil {
		return err
	}
	if err := h.openMedia(api); err != nil {
		return err
	}
	if err := h.openBridges(); err != nil {
		return err
	}
	if err := h.metrics.ObserveOps(h.opsState); err != nil {
		return err
	}
	h.Handler = h.handler(api)
	return nil
}

// openClientAPI opens the Client-Server API with the trust space's
// decisions, the appservices and the rate limits.
func (h *Hub) openClientAPI() (*clientapi.API, error) {
	cfg := h.Config
	api := clientapi.New(clientapi.Config{
		ServerName: cfg.ServerName, PublicBaseURL: cfg.PublicBaseURL, EnableRegistration: cfg.EnableRegistration,
		ProfileRequiresAuth: cfg.ProfileRequiresAuth,
	}, h.Store, h.IDs, identity.NewSharedSecretRegistrar(cfg.RegistrationSharedSecret), h.Rooms, h.Sync,
		h.Log.With("component", "clientapi"), h.readiness(map[string]clientapi.Readiness{"store": h.Store, "nats": h.Bus, "directory": h.Trust}))
	ct := clientapi.Trust{Policy: h.Policy, Search: h.searchDirectory, Audit: auditor{h}, Refusals: h.Refusals}
	if h.psc != nil {
		ct.SSO = h.psc
	}
	api.SetTrust(ct)
	h.fed.api = api
	api.SetAppservices(h.Appservices)
	if err := h.setLimits(cfg, api); err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	return api, nil
}

// openMedia opens the media repository, its uploads limited as the
// Client-Server API's.
func (h *Hub) openMedia(api *clientapi.API) error {
	cfg := h.Config
	mediaStore, err := media.NewDiskStore(cfg.MediaDir)
	if err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	h.Media = media.New(mediaStore, media.Config{ServerName: cfg.ServerName, MaxUploadBytes: int64(cfg.MediaMaxUploadBytes)}, h.Log.With("component", "media"))
	h.Media.SetUploadGate(h.uploadGate(api))
	return nil
}

// openBridges opens the Bridge Protocol gateway, told of every change of
// an operator's status.
func (h *Hub) openBridges() error {
	cfg := h.Config
	var err error
	if h.Bridges, err = gateway.New(gateway.Config{
		Consent:    h.Consent,
		ServerName: cfg.ServerName, Store: h.Store, Rooms: h.Rooms, Policy: h.Policy, IDs: h.IDs,
		Operators: h.Operators, Feeds: h.Bus, Ephemeral: h.Sync, Search: h.searchDirectory,
		Retention: cfg.NATSStreamMaxAge, Log: h.Log.With("component", "bridges"), Media: bridgeMedia{h.Media},
		Refusals:  h.Refusals,
		RateLimit: bridgeLimits{h}, History: bridgeHistory{h.Sync},
	}); err != nil {
		return fmt.Errorf("bridge gateway: %w", err)
	}
	h.Operators.OnChange(h.Bridges.OperatorChanged)
	return nil
}

// handler routes every door and puts the shared plumbing in front
// (internal/httpapi): the body read deadline, request IDs, CORS, then
// the metrics.
func (h *Hub) handler(api *clientapi.API) http.Handler {
	cfg, log := h.Config, h.Log
	mux := api.Handler()
	h.Media.Register(mux, h.mediaAuth(api))
	admin := adminapi.New(h.Operators, api, log)
	admin.SetBindings(h.Consent)
	admin.Register(mux)
	consent.NewAPI(h.Consent, api, cfg.ServerName, log.With("component", "consent")).Register(mux)
	h.Appservices.Register(mux)
	mux.Handle("GET /metrics", h.metricsHandler)
	mux.Handle("GET "+gateway.Path, h.Bridges)
	return httpapi.WithBodyDeadline(cfg.RequestBodyTimeout,
		httpapi.WithRequestID(httpapi.WithCORS(h.metrics.Middleware(func(r *http.Request) string { return r.Pattern }, mux))))
}

// fanout hands committed events to several consumers in-process: the
// local sync notifier first (latency), then the outbox relay (NATS).
type fanout []rooms.Publisher

func (f fanout) Accepted(evs []store.Event) {
	for _, p := range f {
		p.Accepted(evs)
	}
}

// Serve listens on cfg.Listen (or ln when non-nil) until ctx ends, then
// shuts down gracefully.
func (h *Hub) Serve(ctx context.Context, ln net.Listener) error {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", h.Config.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	stopFederation, err := h.serveFederation(ctx)
	if err != nil {
		return err
	}
	defer stopFederation()
	srv := &http.Server{Handler: h.Handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// Close stops every component, in reverse order of start.
func (h *Hub) Close() {
	h.closeFederation()
	if h.Bridges != nil {
		h.Bridges.Close()
	}
	if h.Rooms != nil {
		h.Rooms.Close()
	}
	if h.cancel != nil {
		h.cancel()
	}
	if h.Audit != nil {
		h.Audit.Close()
	}
	if h.relayDone != nil {
		<-h.relayDone
	}
	if h.appservicesDone != nil {
		<-h.appservicesDone
	}
	if h.unsubRevoked != nil {
		h.unsubRevoked()
	}
	if h.unsubBindings != nil {
		h.unsubBindings()
	}
	if h.Bus != nil {
		h.Bus.Close()
	}
	if h.Store != nil {
		_ = h.Store.Close()
	}
}

// searchDirectory answers user search from the health directory: an
// idNat finds its practitioner, anything else is a name, profession or
// city search over active practitioners.
func (h *Hub) searchDirectory(query string, limit int) []directory.Entry {
	ix := h.Dir.Load()
	if _, _, err := directory.ParseIDNat(query); err == nil {
		if e, ok := ix.Lookup(query); ok && e.Active {
			return []directory.Entry{e}
		}
		return nil
	}
	return ix.Search(query, limit)
}

// refusals is the hub's one refusal path (door.Recorder): every door
// hands it its refusals, and it counts each one in
// eimis_policy_refusals_total{code,door} and writes an audit entry naming
// the door.
type refusals struct{ h *Hub }

func (r refusals) Refused(ctx context.Context, ref door.Refusal) {
	r.h.metrics.PolicyRefused(ctx, ref.Code, ref.Door.Label())
	if ref.RequestID == "" {
		ref.RequestID = door.RequestID(ctx)
	}
	// The decision is taken: the client's giving up must not lose its
	// trace.
	r.h.record(context.WithoutCancel(ctx), audit.Entry{Actor: ref.Actor, Action: ref.Action, RoomID: ref.RoomID,
		Target: ref.Target, Decision: audit.Deny, Reason: ref.Code, RequestID: ref.RequestID, Door: ref.Door.String()})
}

// record writes an audit entry; a failure is logged, not returned: the
// decision has been taken, and the trail's own checks (verify, the
// consumers' redelivery) cover the rest.
func (h *Hub) record(ctx context.Context, e audit.Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if err := h.Audit.Record(ctx, e); err != nil {
		h.Log.Error("audit entry not recorded", "action", e.Action, "err", err)
	}
}

// auditor adapts the trail to the Client-Server API's decisions.
type auditor struct{ h *Hub }

func (a auditor) Record(ctx context.Context, e clientapi.AuditEvent) {
	d := audit.Deny
	if e.Allowed {
		d = audit.Allow
	}
	a.h.record(ctx, audit.Entry{Actor: e.Actor, Action: e.Action, RoomID: e.RoomID, Target: e.Target,
		Decision: d, Reason: e.Reason, RequestID: e.RequestID, Door: e.Door})
}

// bridgeMedia stores a bridge's `upload` in the media repository.
type bridgeMedia struct{ m *media.Service }

func (b bridgeMedia) Upload(ctx context.Context, uploader id.UserID, contentType, filename string, body io.Reader) (string, error) {
	md, err := b.m.Upload(ctx, media.Upload{Uploader: string(uploader), ContentType: contentType, Filename: filename, Body: body})
	if err != nil {
		return "", err
	}
	return b.m.ContentURI(md.ID).String(), nil
}

// mediaAuth accepts Matrix access tokens and, for vendors' bridges, a
// bridge token acting for one of its bound users (?user_id=), so a bridge
// uploads large files over HTTP rather than through its socket.
func (h *Hub) mediaAuth(api *clientapi.API) media.AuthFunc {
	return func(r *http.Request) (string, error) {
		if tok := httpapi.BearerToken(r); strings.HasPrefix(tok, gateway.TokenPrefix) {
			u, err := h.Bridges.ActingUser(r.Context(), tok, r.URL.Query().Get("user_id"))
			if err != nil {
				return "", mautrix.MForbidden.WithMessage("%s", err.Error())
			}
			return string(u), nil
		}
		return api.UserID(r)
	}
}
