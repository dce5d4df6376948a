// Package sender delivers the hub's events and EDUs to the other servers
// of the trust space: the Server-Server API's outbound transactions.
//
// Accepted local events are read from the hub's event stream by one
// durable consumer (bus.ConsumerFedFanout), which works out each event's
// destinations (the servers with members joined to the room just before
// or just after the event, and the target's server of a membership event)
// and appends the event to one queue per destination in JetStream
// (bus.StreamFedOut). Each destination then has a worker and a durable
// consumer of its own: it packs up to 50 PDUs and 100 EDUs into a
// transaction, sends it, acknowledges the entries once the remote server
// accepted it, and on failure marks the destination down and retries the
// same transaction with exponential backoff. A server that is down holds
// back only its own queue.
//
// Durability: an entry leaves its queue only when its transaction was
// accepted. The transaction in flight is recorded (bus.Inflight) before
// its first attempt, so after a restart of the hub or of NATS it is sent
// again with the same ID and content, and the receiver's
// de-duplication by transaction ID makes the retry harmless.
//
// Catch-up: a destination back from a long outage is not replayed
// everything. After a failure (or when an entry says a long backlog is
// behind it), the worker looks at the queue's depth: of the entries
// beyond the most recent CatchUpWindow, the PDUs are skipped
// (acknowledged unsent). The destination gets the transaction it was
// trying to deliver and then the most recent events, and fetches the gap
// it cares about with get_missing_events from their prev_events, as the
// spec intends. EDUs are never skipped that way.
//
// Typing and presence (best-effort) never touch JetStream: they travel on
// core NATS to the instance running the destination's queue and wait in a
// small bounded buffer, dropped when full or stale.
package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/federation"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/store"
)

// Transaction limits of the Server-Server API.
const (
	MaxPDUsPerTxn = 50
	MaxEDUsPerTxn = 100
)

// Transport sends one transaction (PUT /_matrix/federation/v1/send/{txnId})
// to req.Destination. mautrix's *federation.Client satisfies it.
type Transport interface {
	SendTransaction(ctx context.Context, req *federation.ReqSendTransaction) (*federation.RespSendTransaction, error)
}

// The hub's real parts satisfy the interfaces below as they are.
var (
	_ Transport = (*federation.Client)(nil)
	_ RoomState = store.Store(nil)
)

// AllowList says whether a server is in the trust space. No request and
// no queue entry is ever made for a server it refuses.
type AllowList interface {
	ServerAllowed(server string) error
}

// RoomState is what the sender reads from the store to find an event's
// destinations. store.Store satisfies it.
type RoomState interface {
	EventByID(ctx context.Context, eventID string) (*store.Event, error)
	EventsByID(ctx context.Context, eventIDs []string) ([]store.Event, error)
	StateGroup(ctx context.Context, group int64) (store.StateMap, error)
	RoomMembers(ctx context.Context, roomID, membership string) ([]store.Membership, error)
}

// Metrics receives the sender's counts. *telemetry.Metrics satisfies it;
// nil records nothing.
type Metrics interface {
	FederationTxn(ctx context.Context, ok bool)
	FederationDelivered(ctx context.Context, lag time.Duration)
	FederationDropped(ctx context.Context, reason string, n int)
}

// Reasons for FederationDropped: a fixed set.
const (
	DropUnlisted          = "unlisted"
	DropCatchUp           = "catchup"
	DropEphemeralOverflow = "ephemeral_overflow"
	DropEphemeralStale    = "ephemeral_stale"
	DropUndecodable       = "undecodable"
)

// ErrNotAllowed is returned by QueueEDU for a destination the allow-list
// refuses (wrapping the allow-list's reason).
var ErrNotAllowed = errors.New("sender: destination not in the federation list")

// Config configures a Sender. ServerName, Bus, Store, Transport and Allow
// are required.
type Config struct {
	// ServerName is this hub's server name: only events whose sender
	// belongs to it are sent, and it is never a destination.
	ServerName string
	Bus        *bus.Bus
	Store      RoomState
	Transport  Transport
	Allow      AllowList
	Metrics    Metrics
	Log        *slog.Logger

	// FanoutOnly makes this instance only fill the queues (from the event
	// stream and QueueEDU) without sending. Exactly one instance of a
	// deployment must run the queues (FanoutOnly false): two would share
	// a destination's consumer.
	FanoutOnly bool

	// BackoffBase and BackoffMax bound the retry delay of a failing
	// destination: BackoffBase doubled per consecutive failure, capped at
	// BackoffMax (defaults 1s and 5m).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// SendTimeout bounds one transaction attempt (default 60s).
	SendTimeout time.Duration
	// CatchUpWindow is how many queued entries behind it a PDU may have
	// and still be sent; older PDUs of a longer backlog are skipped
	// (default 500).
	CatchUpWindow int
	// EphemeralMax and EphemeralMaxAge bound the typing/presence buffer
	// of each destination (defaults 100 and 30s).
	EphemeralMax    int
	EphemeralMaxAge time.Duration
	// Queue sizes the JetStream queues.
	Queue bus.FedOutConfig
	// MaxPDUs and MaxEDUs lower the per-transaction limits (tests); zero
	// or anything above the spec's limits means the spec's.
	MaxPDUs, MaxEDUs int
}

func (c *Config) defaults() error {
	switch {
	case c.ServerName == "":
		return errors.New("sender: ServerName required")
	case c.Bus == nil || c.Store == nil || c.Transport == nil || c.Allow == nil:
		return errors.New("sender: Bus, Store, Transport and Allow required")
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = time.Minute
	}
	if c.CatchUpWindow <= 0 {
		c.CatchUpWindow = 500
	}
	if c.EphemeralMax <= 0 {
		c.EphemeralMax = 100
	}
	if c.EphemeralMaxAge <= 0 {
		c.EphemeralMaxAge = 30 * time.Second
	}
	if c.MaxPDUs <= 0 || c.MaxPDUs > MaxPDUsPerTxn {
		c.MaxPDUs = MaxPDUsPerTxn
	}
	if c.MaxEDUs <= 0 || c.MaxEDUs > MaxEDUsPerTxn {
		c.MaxEDUs = MaxEDUsPerTxn
	}
	return nil
}

// EDU is one Ephemeral Data Unit as it goes in a transaction.
type EDU struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// ephemeralEDU reports whether an EDU type is best-effort: typing and
// presence are re-sent by their source and stale within seconds.
func ephemeralEDU(t string) bool { return t == "m.typing" || t == "m.presence" }

// entry is the body of a queue entry (and of an ephemeral message).
type entry struct {
	// Dest is set on ephemeral messages only (core NATS hands the
	// subscriber the payload, not the subject).
	Dest     string          `json:"dest,omitempty"`
	QueuedAt int64           `json:"t"` // unix milliseconds
	PDU      json.RawMessage `json:"pdu,omitempty"`
	EDU      *EDU            `json:"edu,omitempty"`
}

// Sender is the outbound federation sender. Build it with New, run it
// with Run.
type Sender struct {
	cfg   Config
	log   *slog.Logger
	q     *bus.FedOut
	dests *destResolver

	mu      sync.Mutex
	runCtx  context.Context
	workers map[string]*worker
	wg      sync.WaitGroup
	txnSeq  atomic.Uint64
	ready   chan struct{}
}

// New opens the queues (bus.StreamFedOut) and returns a sender; nothing
// is consumed or sent until Run.
func New(ctx context.Context, cfg Config) (*Sender, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	q, err := cfg.Bus.OpenFedOut(ctx, cfg.Queue)
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	return &Sender{
		cfg:     cfg,
		log:     cfg.Log.With("component", "federation-sender"),
		q:       q,
		dests:   newDestResolver(cfg.Store, cfg.ServerName),
		workers: map[string]*worker{},
		ready:   make(chan struct{}),
	}, nil
}

// Run consumes the event stream and runs the destinations' queues until
// ctx is done; it returns once every worker stopped. It returns an error
// only if it cannot start.
func (s *Sender) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.runCtx != nil {
		s.mu.Unlock()
		return errors.New("sender: already running")
	}
	s.runCtx = ctx
	s.mu.Unlock()
	defer s.wg.Wait()

	if !s.cfg.FanoutOnly {
		unsub, err := s.cfg.Bus.SubscribeEphemeral(bus.FedOutEphemeralWildcard, s.onEphemeral)
		if err != nil {
			return fmt.Errorf("sender: %w", err)
		}
		defer unsub()
		// Resume every queue that has entries, whether or not new events
		// come for its destination.
		pending, err := s.q.PendingDestinations(ctx)
		if err != nil {
			return fmt.Errorf("sender: %w", err)
		}
		for d := range pending {
			s.ensureWorker(d)
		}
	}
	close(s.ready)
	for {
		err := s.cfg.Bus.ConsumeBatch(ctx, bus.ConsumerFedFanout, "", 64, 5*time.Millisecond, s.fanout)
		if ctx.Err() != nil || errors.Is(err, bus.ErrClosed) {
			return nil
		}
		s.log.Warn("federation fan-out consumer stopped; restarting", errclass.Attr(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// Ready is closed once Run has subscribed to the best-effort EDUs and
// resumed the pending queues (typing queued before may be lost).
func (s *Sender) Ready() <-chan struct{} { return s.ready }

// serverOf returns the server name of a user ID (@local:server, where
// server may carry a port).
func serverOf(userID string) string {
	_, server, ok := strings.Cut(userID, ":")
	if !ok || !strings.HasPrefix(userID, "@") {
		return ""
	}
	return server
}

// fanout turns a batch of accepted events into queue entries.
func (s *Sender) fanout(ctx context.Context, evs []bus.EventMsg) error {
	var entries []bus.FedOutEntry
	var dests []string
	now := time.Now().UnixMilli()
	for _, ev := range evs {
		if serverOf(ev.Sender) != s.cfg.ServerName {
			// Events from other servers are theirs to send.
			continue
		}
		ds, pdu, err := s.dests.forEvent(ctx, ev)
		if errors.Is(err, store.ErrNotFound) {
			s.log.Warn("accepted event not found in the store; not federated", "event_id", ev.EventID)
			continue
		}
		if err != nil {
			return fmt.Errorf("sender: destinations of %s: %w", ev.EventID, err)
		}
		if len(ds) == 0 {
			continue
		}
		body, err := json.Marshal(entry{QueuedAt: now, PDU: pdu})
		if err != nil {
			return fmt.Errorf("%w: sender: encode %s: %v", bus.ErrTerminal, ev.EventID, errclass.Of(err))
		}
		for _, d := range ds {
			if err := s.cfg.Allow.ServerAllowed(d); err != nil {
				s.dropped(ctx, DropUnlisted, 1)
				s.log.Debug("destination not in the federation list; event not queued", "destination", d, "event_id", ev.EventID)
				continue
			}
			entries = append(entries, bus.FedOutEntry{Dest: d, Kind: bus.FedOutKindPDU, MsgID: d + "|" + ev.EventID, Body: body})
			dests = append(dests, d)
		}
	}
	if len(entries) == 0 {
		return nil
	}
	if err := s.q.Publish(ctx, entries); err != nil {
		return fmt.Errorf("sender: queue: %w", err)
	}
	for _, d := range dests {
		s.ensureWorker(d)
	}
	return nil
}

// QueuePDU queues an event that did not come through the event stream (or
// must reach a server its room membership does not name) to dests. The
// event ID de-duplicates it per destination within the stream's duplicate
// window.
func (s *Sender) QueuePDU(ctx context.Context, eventID string, pdu json.RawMessage, dests ...string) error {
	body, err := json.Marshal(entry{QueuedAt: time.Now().UnixMilli(), PDU: pdu})
	if err != nil {
		return fmt.Errorf("sender: encode %s: %w", eventID, err)
	}
	var entries []bus.FedOutEntry
	var firstErr error
	for _, d := range dests {
		if err := s.checkDest(ctx, d); err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		entries = append(entries, bus.FedOutEntry{Dest: d, Kind: bus.FedOutKindPDU, MsgID: d + "|" + eventID, Body: body})
	}
	if len(entries) > 0 {
		if err := s.q.Publish(ctx, entries); err != nil {
			return fmt.Errorf("sender: queue: %w", err)
		}
		for _, e := range entries {
			s.ensureWorker(e.Dest)
		}
	}
	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func (s *Sender) checkDest(ctx context.Context, dest string) error {
	if dest == "" || dest == s.cfg.ServerName {
		return fmt.Errorf("sender: %q is not a remote destination", dest)
	}
	if err := s.cfg.Allow.ServerAllowed(dest); err != nil {
		s.dropped(ctx, DropUnlisted, 1)
		return fmt.Errorf("%w: %s: %w", ErrNotAllowed, dest, err)
	}
	return nil
}

// QueueEDU queues an EDU for dest. Typing and presence are best-effort
// (core NATS, a bounded buffer: they may be dropped); every other type
// (receipts, to-device, device list and signing key updates) is durable:
// once QueueEDU returns nil it is delivered, across restarts, unless the
// destination drops out of the federation list. A destination the list
// refuses is never queued: the error wraps ErrNotAllowed.
func (s *Sender) QueueEDU(ctx context.Context, dest string, edu EDU) error {
	if edu.Type == "" {
		return errors.New("sender: EDU without edu_type")
	}
	if len(edu.Content) == 0 {
		edu.Content = json.RawMessage("{}")
	}
	if err := s.checkDest(ctx, dest); err != nil {
		return err
	}
	e := entry{QueuedAt: time.Now().UnixMilli(), EDU: &edu}
	if ephemeralEDU(edu.Type) {
		e.Dest = dest
		body, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("sender: encode EDU: %w", err)
		}
		if err := s.cfg.Bus.PublishEphemeral(bus.FedOutEphemeralSubject(dest), body); err != nil {
			return fmt.Errorf("sender: %w", err)
		}
		return nil
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("sender: encode EDU: %w", err)
	}
	if err := s.q.Publish(ctx, []bus.FedOutEntry{{Dest: dest, Kind: bus.FedOutKindEDU, Body: body}}); err != nil {
		return fmt.Errorf("sender: queue EDU: %w", err)
	}
	s.ensureWorker(dest)
	return nil
}

func (s *Sender) onEphemeral(data []byte) {
	var e entry
	if err := json.Unmarshal(data, &e); err != nil || e.EDU == nil || e.Dest == "" {
		s.dropped(context.Background(), DropUndecodable, 1)
		return
	}
	if w := s.ensureWorker(e.Dest); w != nil {
		w.pushEphemeral(e)
	}
}

// Wake makes a down destination retry now instead of at the end of its
// backoff: for when the server was seen alive (it sent us a request).
func (s *Sender) Wake(dest string) {
	s.mu.Lock()
	w := s.workers[dest]
	s.mu.Unlock()
	if w != nil {
		select {
		case w.retryNow <- struct{}{}:
		default:
		}
	}
}

// ensureWorker starts dest's worker if this instance runs queues and it
// is not running yet. It returns nil when no worker runs here.
func (s *Sender) ensureWorker(dest string) *worker {
	if s.cfg.FanoutOnly {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.workers[dest]; ok {
		return w
	}
	if s.runCtx == nil || s.runCtx.Err() != nil {
		return nil
	}
	w := newWorker(s, dest)
	s.workers[dest] = w
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		w.run(s.runCtx)
	}()
	return w
}

func (s *Sender) dropped(ctx context.Context, reason string, n int) {
	if s.cfg.Metrics != nil && n > 0 {
		s.cfg.Metrics.FederationDropped(ctx, reason, n)
	}
}

// DestStatus is one destination's state, for operators and metrics.
type DestStatus struct {
	Destination string
	// Up is false while the last transaction failed (the destination is
	// retried with backoff).
	Up bool
	// Failures counts consecutive failed attempts.
	Failures int
	// QueueDepth is the undelivered entries in the destination's queue.
	QueueDepth uint64
	// LastSuccess is when a transaction was last accepted (zero: never,
	// since this instance started).
	LastSuccess time.Time
	// NextRetry is when a down destination is tried again.
	NextRetry time.Time
	// LastError is the class of the last failure (no content).
	LastError string
	// Oldest is when the oldest entry held for sending was queued (zero
	// when nothing is held).
	Oldest time.Time
}

// Status returns every destination known to this instance (with a
// worker, or with entries queued), sorted by name.
func (s *Sender) Status(ctx context.Context) ([]DestStatus, error) {
	pending, err := s.q.PendingDestinations(ctx)
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	s.mu.Lock()
	ws := make([]*worker, 0, len(s.workers))
	for _, w := range s.workers {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	out := make([]DestStatus, 0, len(ws))
	seen := map[string]bool{}
	for _, w := range ws {
		st := w.status()
		st.QueueDepth = pending[w.dest]
		out = append(out, st)
		seen[w.dest] = true
	}
	for d, n := range pending {
		if !seen[d] {
			out = append(out, DestStatus{Destination: d, Up: true, QueueDepth: n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Destination < out[j].Destination })
	return out, nil
}

// Gauges sums Status for the metrics gauges.
type Gauges struct {
	Destinations, Down int
	QueueDepth         int64
	Lag                time.Duration
}

// Gauges returns the sender's aggregate state (one stream-info call).
func (s *Sender) Gauges(ctx context.Context) Gauges {
	st, err := s.Status(ctx)
	if err != nil {
		s.log.Debug("federation gauges unavailable", errclass.Attr(err))
	}
	var g Gauges
	now := time.Now()
	for _, d := range st {
		g.Destinations++
		if !d.Up {
			g.Down++
		}
		g.QueueDepth += int64(d.QueueDepth)
		if !d.Oldest.IsZero() {
			g.Lag = max(g.Lag, now.Sub(d.Oldest))
		}
	}
	return g
}
