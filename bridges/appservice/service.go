package appservice

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
)

// Store is what the running component needs: the appservice tables
// (registrations, leases, queues, transactions), the events and receipts
// it pushes, and the accounts and bindings its consent checks read.
type Store interface {
	store.AppserviceStore

	MaxPos(ctx context.Context) (int64, error)
	EventsByID(ctx context.Context, eventIDs []string) ([]store.Event, error)
	CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (*store.Event, error)
	ReceiptsSince(ctx context.Context, roomIDs []string, from, to int64) ([]store.Receipt, error)
	GetAccount(ctx context.Context, localpart string) (*store.Account, error)
	Bindings(ctx context.Context, f store.BindingFilter) ([]store.Binding, error)
}

// Config wires the appservice component of one hub instance.
type Config struct {
	ServerName string
	Store      Store
	Bus        *bus.Bus
	Policy     *policy.Engine
	IDs        *identity.Service
	Log        *slog.Logger
	// HTTPClient calls the appservices (transactions, ping); nil means a
	// client with a 60 s timeout.
	HTTPClient *http.Client
	// ReloadInterval is how often registrations added or removed by the
	// CLI are picked up (the trust space's reload interval), and the
	// practitioners' consents to puppets.
	ReloadInterval time.Duration
	// Consent records the practitioners' consent that the appservices
	// bind them with (POST /_eimis/appservice/v1/bindings); nil turns
	// that endpoint off.
	Consent Consent
	// Recorder is told about every bind the appservice door refuses
	// (default door.Discard).
	Recorder door.Recorder
	// OnConsentWithdrawn is called when a reload finds that a
	// practitioner withdrew their consent to an appservice: their
	// puppet is now refused, and the hub takes it out of its rooms (the
	// trust keeper's sweep).
	OnConsentWithdrawn func(ctx context.Context)
}

// Service authenticates appservices and pushes events to them.
type Service struct {
	cfg   Config
	snap  atomic.Pointer[snapshot]
	owner string // this instance's name in leases

	// registered caches user IDs known to have an account: accounts are
	// never deleted, so a positive answer stays true.
	regMu      sync.Mutex
	registered map[id.UserID]bool

	runMu   sync.Mutex
	runCtx  context.Context
	runners map[string]*runner

	// eph are the pushers of this instance taking ephemeral events, by
	// appservice ID.
	ephMu sync.Mutex
	eph   map[string]*pusher

	// consentMu serialises consent reloads; consents is the last set
	// loaded, to tell a withdrawal.
	consentMu sync.Mutex
	consents  map[policy.PuppetConsent]bool
}

type entry struct {
	*Compiled
	row store.Appservice
}

type snapshot struct {
	byID    map[string]*entry
	byToken map[[32]byte]*entry
}

// New returns the service; Load it before serving, then Run it.
func New(cfg Config) *Service {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = 10 * time.Second
	}
	if cfg.Recorder == nil {
		cfg.Recorder = door.Discard{}
	}
	s := &Service{cfg: cfg, owner: identity.RandomString(16), registered: map[id.UserID]bool{}, runners: map[string]*runner{}, eph: map[string]*pusher{}}
	s.snap.Store(&snapshot{byID: map[string]*entry{}, byToken: map[[32]byte]*entry{}})
	return s
}

// Load reads the registrations: their tokens work, and their puppets are
// known to the policy engine, from the moment it returns.
func (s *Service) Load(ctx context.Context) error { return s.Reload(ctx) }

// Reload re-reads the registrations (added or removed by the CLI, maybe
// on another machine) and starts or stops pushers to match.
func (s *Service) Reload(ctx context.Context) error {
	rows, err := s.cfg.Store.Appservices(ctx)
	if err != nil {
		return fmt.Errorf("appservices: %w", err)
	}
	next := &snapshot{byID: map[string]*entry{}, byToken: map[[32]byte]*entry{}}
	var puppets []policy.PuppetNamespace
	for _, row := range rows {
		c, err := compileStored(row, s.cfg.ServerName)
		if err != nil {
			// Refuse this one, keep the others: a registration written for
			// another server name must not take the hub down.
			s.cfg.Log.Error("appservice registration unusable, ignored", "appservice", row.ID, "err", err)
			continue
		}
		e := &entry{Compiled: c, row: row}
		next.byID[row.ID] = e
		var h [32]byte
		copy(h[:], row.ASTokenHash)
		next.byToken[h] = e
		for _, p := range c.PuppetPatterns() {
			puppets = append(puppets, policy.PuppetNamespace{Appservice: row.ID, Pattern: p})
		}
	}
	if s.cfg.Policy != nil {
		// Consents first: a new namespace's puppets are never authorised
		// without them, not even for the time between two calls.
		if err := s.ReloadConsents(ctx); err != nil {
			return err
		}
		if err := s.cfg.Policy.SetPuppetNamespaces(puppets); err != nil {
			return err
		}
	}
	old := s.snap.Swap(next)
	for id := range next.byID {
		if old.byID[id] == nil {
			s.cfg.Log.Info("appservice loaded", "appservice", id, "url", next.byID[id].URL)
		}
	}
	for id := range old.byID {
		if next.byID[id] == nil {
			s.cfg.Log.Info("appservice removed", "appservice", id)
		}
	}
	s.syncRunners()
	return nil
}

// ReloadConsents re-reads the practitioners' consents to appservices
// (bindings of kind appservice) into the policy engine, which decides on
// puppets from them. A consent found withdrawn calls OnConsentWithdrawn.
func (s *Service) ReloadConsents(ctx context.Context) error {
	if s.cfg.Policy == nil {
		return nil
	}
	s.consentMu.Lock()
	defer s.consentMu.Unlock()
	bs, err := s.cfg.Store.Bindings(ctx, store.BindingFilter{Kind: store.BindingAppservice})
	if err != nil {
		return fmt.Errorf("appservice consents: %w", err)
	}
	next := make(map[policy.PuppetConsent]bool, len(bs))
	list := make([]policy.PuppetConsent, 0, len(bs))
	for _, b := range bs {
		c := policy.PuppetConsent{Appservice: b.AppID, IDNat: id.UserID(b.UserID).Localpart()}
		next[c] = true
		list = append(list, c)
	}
	s.cfg.Policy.SetPuppetConsents(list)
	withdrawn := false
	for c := range s.consents {
		if !next[c] {
			withdrawn = true
			s.cfg.Log.Info("consent to an appservice withdrawn", "appservice", c.Appservice, "idnat", c.IDNat)
		}
	}
	s.consents = next
	if withdrawn && s.cfg.OnConsentWithdrawn != nil {
		s.cfg.OnConsentWithdrawn(ctx)
	}
	return nil
}

// compileStored rebuilds a stored registration. Its tokens are not in the
// JSON (the as_token is only a hash), so they are not checked again.
func compileStored(row store.Appservice, serverName string) (*Compiled, error) {
	var reg Registration
	if err := json.Unmarshal(row.Registration, &reg); err != nil {
		return nil, fmt.Errorf("decode registration: %w", err)
	}
	reg.HSToken = row.HSToken
	return reg.validate(serverName, false)
}

// Run reloads periodically and runs the pushers until ctx ends; it
// returns once every pusher has stopped and released its lease.
func (s *Service) Run(ctx context.Context) {
	s.runMu.Lock()
	s.runCtx = ctx
	s.runMu.Unlock()
	s.syncRunners()
	t := time.NewTicker(s.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.runMu.Lock()
			for id, r := range s.runners {
				r.cancel()
				<-r.done
				delete(s.runners, id)
			}
			s.runMu.Unlock()
			return
		case <-t.C:
			if err := s.Reload(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("appservice reload", "err", err)
			}
		}
	}
}

func (s *Service) lookupToken(token string) *entry {
	return s.snap.Load().byToken[sha256.Sum256([]byte(token))]
}

func (s *Service) lookup(asID string) *entry { return s.snap.Load().byID[asID] }

// Owner returns the appservice whose as_token this is.
func (s *Service) Owner(token string) (string, bool) {
	if e := s.lookupToken(token); e != nil {
		return e.ID, true
	}
	return "", false
}

// Owns reports whether the appservice may act as u (register it, log it
// in, masquerade as it): its sender and its exclusive namespaces.
func (s *Service) Owns(asID string, u id.UserID) bool {
	e := s.lookup(asID)
	return e != nil && e.Owns(string(u))
}

// Exclusive returns the appservice holding u in an exclusive namespace:
// nobody else may register u.
func (s *Service) Exclusive(u id.UserID) (string, bool) {
	for _, e := range s.snap.Load().byID {
		if e.Exclusive(string(u)) {
			return e.ID, true
		}
	}
	return "", false
}

// Authenticate resolves a request made with an as_token. ok is false when
// the token is no appservice's (the caller then tries access tokens).
// userID is the ?user_id= the appservice acts as ("" for its sender): it
// must be the appservice's own, registered, and admitted by the trust
// space like any user. Refusals are mautrix.RespError values or policy
// refusals.
func (s *Service) Authenticate(ctx context.Context, token string, userID id.UserID) (identity.Session, bool, error) {
	e := s.lookupToken(token)
	if e == nil {
		return identity.Session{}, false, nil
	}
	if userID == "" {
		userID = e.Sender()
	}
	if !e.Owns(string(userID)) {
		return identity.Session{}, true, mautrix.MForbidden.WithMessage(
			"Application service %s cannot act as %s: not its sender nor in its exclusive user namespaces", e.ID, userID)
	}
	if err := s.mustExist(ctx, userID); err != nil {
		return identity.Session{}, true, err
	}
	if err := s.cfg.IDs.Admit(userID); err != nil {
		return identity.Session{}, true, err
	}
	return identity.Session{UserID: userID, Appservice: e.ID}, true, nil
}

// mustExist refuses to act as a user the appservice has not registered,
// as the spec asks: masquerading does not create accounts.
func (s *Service) mustExist(ctx context.Context, u id.UserID) error {
	s.regMu.Lock()
	ok := s.registered[u]
	s.regMu.Unlock()
	if ok {
		return nil
	}
	lp, err := s.cfg.IDs.LocalpartOf(u)
	if err != nil {
		return mautrix.MForbidden.WithMessage("%s is not a user of this server", u)
	}
	if _, err := s.cfg.Store.GetAccount(ctx, lp); errors.Is(err, store.ErrNotFound) {
		return mautrix.MForbidden.WithMessage("Application service has not registered %s", u)
	} else if err != nil {
		return err
	}
	s.regMu.Lock()
	if len(s.registered) > 100_000 {
		clear(s.registered)
	}
	s.registered[u] = true
	s.regMu.Unlock()
	return nil
}

// pingTimeout bounds the hub's call to the appservice's ping endpoint;
// the spec leaves it to the server.
const pingTimeout = 15 * time.Second

// Ping calls the appservice's POST /_matrix/app/v1/ping with its hs_token
// and returns how long it took to answer, as
// POST /_matrix/client/v1/appservice/{appserviceId}/ping reports it.
func (s *Service) Ping(ctx context.Context, asID, txnID string) (time.Duration, error) {
	e := s.lookup(asID)
	if e == nil {
		return 0, mautrix.MNotFound.WithMessage("Unknown application service %s", asID).WithStatus(http.StatusNotFound)
	}
	if e.URL == "" {
		return 0, mautrix.MURLNotSet.WithMessage("Application service %s has no URL", asID).WithStatus(http.StatusBadRequest)
	}
	body := map[string]string{}
	if txnID != "" {
		body["transaction_id"] = txnID
	}
	raw, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	start := time.Now()
	status, respBody, err := s.call(ctx, e, http.MethodPost, "/_matrix/app/v1/ping", raw)
	took := time.Since(start)
	var ne net.Error
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()):
		return 0, mautrix.MConnectionTimeout.WithMessage("Application service did not answer within %v", pingTimeout).WithStatus(http.StatusGatewayTimeout)
	case err != nil:
		return 0, mautrix.MConnectionFailed.WithMessage("Could not reach the application service: %v", err).WithStatus(http.StatusBadGateway)
	case status < 200 || status > 299:
		return 0, mautrix.MBadStatus.WithMessage("Application service answered %d", status).WithStatus(http.StatusBadGateway).
			WithExtraField("status", status).WithExtraField("body", string(respBody))
	}
	return took, nil
}

// maxAnswer bounds what is read of an appservice's answer: only the
// status matters, the body is kept for error messages.
const maxAnswer = 64 << 10

// call sends one request to the appservice with its hs_token.
func (s *Service) call(ctx context.Context, e *entry, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(e.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// The spec's current form; the legacy ?access_token= query would put
	// the secret in the appservice's access logs.
	req.Header.Set("Authorization", "Bearer "+e.row.HSToken)
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, answer, nil
}
