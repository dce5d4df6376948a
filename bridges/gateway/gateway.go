// Package gateway is the hub side of the Bridge Protocol v1: a WebSocket
// at /_eimis/bridge/v1/ws through which a vendor's messenger ("a bridge")
// acts for the practitioners it binds and receives every event of their
// rooms.
//
// The path of a connection:
//
//   - Handshake: hello (protocol version, bridge token) → welcome. The
//     token (stored as SHA-256) names a bridge; the bridge's operator must
//     pass the allow-list (operators.Registry.Check) now and for as long as
//     the socket lives.
//   - Requests (bind, send, create_room …): each frame is validated against
//     its JSON Schema (schemas/bridge/v1), then turned into room-server
//     calls made as the bound user, so the trust space's gate
//     (rooms.Gate) decides on them exactly as on a Matrix client's.
//   - Events: a JetStream durable consumer per bridge (bus.OpenBridgeFeed)
//     feeds every accepted event; the connection keeps those of rooms
//     where one of its users is a member and sends them with a cursor. The
//     bridge acks cursors; a reconnection resumes after the last ack.
//
// Per-connection memory is bounded: at most MaxUnacked events wait for an
// ack and SendQueue frames wait for the socket; beyond that the
// connection stops pulling (the backlog stays in JetStream) and, after
// StallTimeout, closes with EIMIS_SLOW_CONSUMER.
//
// One socket per bridge: a new connection of the same bridge replaces the
// previous one, on this instance directly and on other instances through
// the consumer being re-created (bus.OpenBridgeFeed).
//
// Never log message content: logs carry bridge, operator, request type,
// users, rooms and codes only.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// Path is where the gateway is mounted.
const Path = "/_eimis/bridge/v1/ws"

// Rooms is what the gateway needs of the room server.
type Rooms interface {
	Send(ctx context.Context, req rooms.Submit) (*rooms.Result, error)
	CreateRoom(ctx context.Context, req rooms.CreateRequest) (*rooms.Result, error)
}

// Policy is the trust space's engine (internal/policy).
type Policy interface {
	CheckUser(u id.UserID) error
	DisplayName(u id.UserID) (string, bool)
}

// Consent is the practitioners' consent to bindings (internal/consent).
type Consent interface {
	Bind(ctx context.Context, d door.Door, u id.UserID, ev consent.Evidence) (consent.Grant, error)
	Unbind(ctx context.Context, d door.Door, u id.UserID) (bool, error)
	Revoke(ctx context.Context, d door.Door, u id.UserID, actor string) (bool, error)
	// Honoured reports whether a stored binding lets its app act now.
	Honoured(b store.Binding) bool
}

// Operators is the operator allow-list (internal/operators).
type Operators interface {
	Check(id string) (*operators.Operator, error)
}

// Feeds opens a bridge's event feed (internal/bus).
type Feeds interface {
	OpenBridgeFeed(ctx context.Context, bridgeID string, cfg bus.BridgeFeedConfig) (*bus.BridgeFeed, error)
}

// Ephemeral carries typing notifications and read-receipt wake-ups
// (internal/syncapi).
type Ephemeral interface {
	SetTyping(room, user string, typing bool, timeout time.Duration) error
	Wake(room, user string)
}

// MediaUploader stores a file for the `upload` request and returns its
// mxc:// URI. The hub wires its media repository here; without one,
// `upload` answers EIMIS_UNSUPPORTED and bridges upload through the
// Matrix media endpoint (see docs/bridge-protocol.md). uploader is the
// bound user the file is recorded under. An error is answered as
// EIMIS_UPLOAD_REFUSED with its text, so it must not carry secrets.
type MediaUploader interface {
	Upload(ctx context.Context, uploader id.UserID, contentType, filename string, body io.Reader) (mxc string, err error)
}

// Limits bound what one connection may hold. Zero fields take defaults.
type Limits struct {
	// MaxFrameBytes: larger frames are refused with EIMIS_FRAME_TOO_LARGE
	// (1 MiB). It also bounds `upload` (base64 inflates by a third).
	MaxFrameBytes int
	// CloseFrameBytes: a frame beyond this closes the connection (1009)
	// instead of being read to its end (16 × MaxFrameBytes).
	CloseFrameBytes int
	// SendQueue: frames waiting for the socket (256).
	SendQueue int
	// MaxUnacked: events sent and not yet acknowledged (512).
	MaxUnacked int
	// StallTimeout: how long a full queue or an unacknowledged event may
	// wait before the connection closes with EIMIS_SLOW_CONSUMER (60 s).
	StallTimeout time.Duration
	// WriteTimeout bounds one socket write (15 s).
	WriteTimeout time.Duration
	// HandshakeTimeout bounds the wait for a valid hello (10 s).
	HandshakeTimeout time.Duration
	// PingInterval: the hub pings every interval and drops a bridge
	// silent for three of them (20 s).
	PingInterval time.Duration
	// Workers handle requests of one connection concurrently; requests on
	// one room always go to the same worker, so they stay in order (8).
	Workers int
	// WorkerQueue: requests waiting per worker before the hub stops
	// reading the socket (16).
	WorkerQueue int
	// RecheckInterval: how often a connection re-reads its bridge's
	// record, so a revocation by the CLI closes it (10 s).
	RecheckInterval time.Duration
}

func (l *Limits) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxFrameBytes, 1<<20)
	def(&l.CloseFrameBytes, 16*l.MaxFrameBytes)
	def(&l.SendQueue, 256)
	def(&l.MaxUnacked, 512)
	def(&l.Workers, 8)
	def(&l.WorkerQueue, 32)
	defD(&l.StallTimeout, time.Minute)
	defD(&l.WriteTimeout, 15*time.Second)
	defD(&l.HandshakeTimeout, 10*time.Second)
	defD(&l.PingInterval, 20*time.Second)
	defD(&l.RecheckInterval, 10*time.Second)
}

// Store is what the gateway reads and writes: the bridges and their
// bindings (consent's store), the accounts it acts for, and the events,
// state and memberships it serves to bridges.
type Store interface {
	consent.Store

	GetBridge(ctx context.Context, id string) (*store.Bridge, error)
	BridgeByTokenHash(ctx context.Context, tokenHash []byte) (*store.Bridge, error)
	UnbindBridgeUser(ctx context.Context, bridgeID, userID string) (bool, error)
	UserBridges(ctx context.Context, userID string) ([]string, error)
	MembershipAt(ctx context.Context, roomID, userID string, pos int64) (string, error)

	GetAccount(ctx context.Context, localpart string) (*store.Account, error)
	AccountsExist(ctx context.Context, localparts []string) (map[string]bool, error)

	GetRoom(ctx context.Context, roomID string) (*store.Room, error)
	EventByID(ctx context.Context, eventID string) (*store.Event, error)
	CurrentState(ctx context.Context, roomID string) ([]store.Event, error)
	CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (*store.Event, error)
	UserMemberships(ctx context.Context, userID string) ([]store.Membership, error)
	PutReceipt(ctx context.Context, r store.Receipt) (int64, error)
}

// Config wires the gateway.
type Config struct {
	ServerName string
	Store      Store
	Rooms      Rooms
	Policy     Policy
	IDs        *identity.Service
	Operators  Operators
	Feeds      Feeds
	Ephemeral  Ephemeral
	// Search answers directory_search (the hub's health-directory search).
	Search func(query string, limit int) []directory.Entry
	// Media, when set, serves the `upload` request.
	Media MediaUploader
	// RateLimit, when set, may refuse a request before it runs (the
	// hub's per-operator limits, ratelimit.go).
	RateLimit RateLimiter
	// History answers `history` requests (the hub's sync API, with its
	// history visibility). Unset, they are unsupported.
	History History
	// Consent decides and records the practitioners' consent to each
	// bind (internal/consent). Unset, a service over Store with the
	// secure defaults is used: binds need a link code.
	Consent Consent
	// Retention is how long a disconnected bridge's backlog position is
	// kept (the event stream's max age bounds it too). Default 7 days.
	Retention time.Duration
	Limits    Limits
	Log       *slog.Logger
	// Refusals is the hub's one refusal path (counted and audited with
	// the bridge as the door). Default: records nothing.
	Refusals door.Recorder
}

// History reads the latest events of a room a user may see, oldest first.
type History interface {
	Recent(ctx context.Context, userID, roomID string, limit int) ([]rooms.ClientEvent, error)
}

// Gateway serves the Bridge Protocol.
type Gateway struct {
	cfg Config
	dec *Decoder
	log *slog.Logger
	up  websocket.Upgrader

	mu     sync.Mutex
	conns  map[string]*conn // by bridge ID
	closed bool

	disconnects atomic.Int64 // stats.go
}

// New builds a gateway; mount it at Path.
func New(cfg Config) (*Gateway, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.Refusals == nil {
		cfg.Refusals = door.Discard{}
	}
	if cfg.Consent == nil {
		cfg.Consent = consent.New(consent.Config{Store: cfg.Store, Log: cfg.Log})
	}
	cfg.Limits.defaults()
	dec, err := NewDecoder(cfg.Limits.MaxFrameBytes)
	if err != nil {
		return nil, err
	}
	return &Gateway{
		cfg: cfg, dec: dec, log: cfg.Log, conns: map[string]*conn{},
		up: websocket.Upgrader{
			HandshakeTimeout: cfg.Limits.HandshakeTimeout,
			ReadBufferSize:   4096,
			WriteBufferSize:  4096,
			// Bridges are servers authenticating with a token in the
			// first frame, not browsers carrying ambient cookies: the
			// origin proves nothing either way.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}, nil
}

// ServeHTTP upgrades to a WebSocket and runs the connection until it ends.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ws, err := g.up.Upgrade(httpapi.Hijackable(w), r, nil)
	if err != nil {
		// The upgrader has answered the client already.
		g.log.Debug("bridge upgrade failed", "err", err)
		return
	}
	c := newConn(g, ws, r.RemoteAddr)
	c.run()
}

// register makes c the bridge's connection and returns the one it
// replaces, if any.
func (g *Gateway) register(c *conn) (*conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errf(CodeShuttingDown, "", "")
	}
	old := g.conns[c.bridge.ID]
	g.conns[c.bridge.ID] = c
	return old, nil
}

func (g *Gateway) unregister(c *conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns[c.bridge.ID] == c {
		delete(g.conns, c.bridge.ID)
		g.disconnects.Add(1)
	}
}

// connsWhere returns the live connections matching keep.
func (g *Gateway) connsWhere(keep func(*conn) bool) []*conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*conn
	for _, c := range g.conns {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// OperatorChanged is the operator registry's OnChange hook: a suspended,
// revoked or vanished operator's sockets get a final operator_suspended
// frame and close at once. It only signals the connections (which do the
// I/O on their own goroutines): the registry runs hooks under its lock.
func (g *Gateway) OperatorChanged(ch operators.Change) {
	if ch.New == operators.Active {
		return
	}
	status, code := string(ch.New), operators.CodeOperatorSuspended
	switch ch.New {
	case operators.Revoked:
		code = operators.CodeOperatorRevoked
	case "":
		status, code = "unknown", operators.CodeUnknownOperator
	}
	reason := ch.Reason
	if reason == "" {
		reason = (&operators.Refusal{Code: code, Subject: ch.Operator.ID}).Error()
	}
	for _, c := range g.connsWhere(func(c *conn) bool { return c.bridge.OperatorID == ch.Operator.ID }) {
		c.operatorSuspended(ch.Operator.ID, status, string(code), reason)
	}
}

// UserRevoked tells this instance's bridges that a practitioner lost their
// authorisation (the trust keeper's OnRemoved): each bridge binding them
// gets user_revoked and loses the binding. Bridges on other instances
// learn it from the user's leave events in their feed.
func (g *Gateway) UserRevoked(ctx context.Context, u id.UserID, code policy.Code, reason string) {
	bridges, err := g.cfg.Store.UserBridges(ctx, string(u))
	if err != nil {
		g.log.Warn("bridges of a revoked user", "user", u, "err", err)
	}
	for _, b := range bridges {
		if _, err := g.cfg.Store.UnbindBridgeUser(ctx, b, string(u)); err != nil {
			g.log.Warn("unbind revoked user", "bridge", b, "user", u, "err", err)
		}
	}
	for _, c := range g.connsWhere(func(c *conn) bool { return c.isBound(u) }) {
		c.revokeUser(u, string(code), reason)
	}
}

// BindingRevoked tells this instance's connection of a bridge that a
// binding was revoked (by the practitioner or an operator, on this
// instance or, through the hub's announcement, another one): the user
// gets user_revoked and the bridge stops acting for them at once. A
// binding made again since (the store has it, honoured) stands.
func (g *Gateway) BindingRevoked(ctx context.Context, bridgeID string, u id.UserID) {
	for _, c := range g.connsWhere(func(c *conn) bool { return c.bridge.ID == bridgeID && c.isBound(u) }) {
		if b, err := g.cfg.Store.GetBinding(ctx, store.BindingBridge, bridgeID, string(u)); err == nil && g.cfg.Consent.Honoured(*b) {
			continue
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			// Unsure: the connection's recheck settles it from the store.
			g.log.Warn("binding revoked: look-up", "bridge", bridgeID, "user", u, "err", err)
			continue
		}
		c.revokeUser(u, string(policy.BindingRevoked), (&policy.Refusal{Code: policy.BindingRevoked, Subject: string(u)}).Error())
	}
}

// ActingUser checks that a bridge token may act for userID now: the
// bridge exists and is not revoked, its operator is active, and it binds
// the user. The hub's media endpoint uses it to accept uploads made with
// a bridge token (Authorization: Bearer <token>, ?user_id=…).
func (g *Gateway) ActingUser(ctx context.Context, token, userID string) (id.UserID, error) {
	b, err := g.cfg.Store.BridgeByTokenHash(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return "", errf(CodeBadToken, "", "")
	} else if err != nil {
		return "", err
	}
	if b.Revoked() {
		return "", errf(CodeBridgeRevoked, "", "")
	}
	if _, err := g.cfg.Operators.Check(b.OperatorID); err != nil {
		if e := refusalError(err, ""); e != nil {
			return "", e
		}
		return "", err
	}
	u, e := g.localUser(userID, "/user_id")
	if e != nil {
		return "", e
	}
	bd, err := g.cfg.Store.GetBinding(ctx, store.BindingBridge, b.ID, string(u))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", errf(CodeNotBound, "/user_id", "")
	case err != nil:
		return "", err
	case !g.cfg.Consent.Honoured(*bd):
		return "", errf(CodeNotBound, "/user_id", "")
	}
	return u, nil
}

// Close ends every connection (EIMIS_SHUTTING_DOWN, so bridges reconnect
// elsewhere) and refuses new ones. It waits for the connections to record
// their last acknowledgement, up to a few seconds.
func (g *Gateway) Close() {
	g.mu.Lock()
	g.closed = true
	var all []*conn
	for _, c := range g.conns {
		all = append(all, c)
	}
	g.mu.Unlock()
	for _, c := range all {
		c.shutdown(errf(CodeShuttingDown, "", ""), websocket.CloseGoingAway)
	}
	deadline := time.After(5 * time.Second)
	for _, c := range all {
		select {
		case <-c.done:
		case <-deadline:
			return
		}
	}
}

// Bridge IDs: the operator ID syntax, so both read alike in logs.
var bridgeIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidBridgeID reports whether s may name a bridge.
func ValidBridgeID(s string) bool { return bridgeIDRe.MatchString(s) }

// tokenPrefix marks bridge tokens, so a token pasted in the wrong place
// (an access token field, a log) is recognisable.
// TokenPrefix starts every bridge token, so that the hub can tell one
// from a Matrix access token without a database look-up.
const TokenPrefix = "eimisb_"

const tokenPrefix = TokenPrefix

// NewToken returns a fresh bridge token and the hash to store.
func NewToken() (token string, hash []byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("gateway: no randomness: %v", err)) // crypto/rand never fails on supported systems
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token)
}

// HashToken is how bridge tokens are stored.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// ErrBadBridgeID is returned by AddBridge for an ID outside the syntax.
var ErrBadBridgeID = errors.New("bridge ID must match [a-z0-9][a-z0-9._-]{0,63}")

// BridgeAdder is what AddBridge needs.
type BridgeAdder interface {
	GetOperator(ctx context.Context, id string) (*store.Operator, error)
	AddBridge(ctx context.Context, b store.Bridge) (*store.Bridge, error)
}

// AddBridge registers a bridge of an existing, non-revoked operator and
// returns its token, which exists nowhere else afterwards.
func AddBridge(ctx context.Context, st BridgeAdder, bridgeID, operatorID string) (string, *store.Bridge, error) {
	if !ValidBridgeID(bridgeID) {
		return "", nil, ErrBadBridgeID
	}
	op, err := st.GetOperator(ctx, operatorID)
	if err != nil {
		return "", nil, fmt.Errorf("operator %s: %w", operatorID, err)
	}
	if op.Status == store.OperatorRevoked {
		return "", nil, fmt.Errorf("operator %s: %w", operatorID, store.ErrRevoked)
	}
	token, hash := NewToken()
	b, err := st.AddBridge(ctx, store.Bridge{ID: bridgeID, OperatorID: operatorID, TokenHash: hash})
	if err != nil {
		return "", nil, err
	}
	return token, b, nil
}
