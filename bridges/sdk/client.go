// Package sdk is the Go client of the EIMIS hub's Bridge Protocol v1: what
// a messenger vendor imports to connect its app to the hub, so that its
// users talk with the users of every other connected app and of Matrix
// clients.
//
// A Client keeps one WebSocket to the hub. Run connects, reconnects with
// exponential backoff and jitter, and hands your OnEvent handler every
// event of the rooms your bound users are in, in order; each event is
// acknowledged after the handler returns nil, and the hub keeps that
// position, so after a disconnection (a deploy, a network cut, an hour
// offline) the bridge gets exactly what it has not acknowledged yet.
//
// Requests (Bind, CreateRoom, Send …) may be made from any goroutine,
// including from within OnEvent; they wait for a connection if there is
// none and honour their context. A practitioner is named by idNat
// ("810001045367") or user ID ("@810001045367:hub.example.org").
//
// The protocol itself (frames, JSON Schemas, error codes) is described in
// docs/bridge-protocol.md of the hub's repository; this package does not
// depend on the hub's internals.
package sdk

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Path is the hub's Bridge Protocol endpoint.
const Path = "/_eimis/bridge/v1/ws"

// ProtocolVersion is the protocol version this package speaks.
const ProtocolVersion = 1

// Config configures a Client. URL and Token are required.
type Config struct {
	// URL of the hub: "https://hub.example.org" (the endpoint path is
	// added) or the endpoint itself, "wss://hub.example.org/_eimis/bridge/v1/ws".
	URL string
	// Token is the bridge token printed once by `eimis-hub bridge add`.
	// Keep it secret: whoever holds it acts for your bound users.
	Token string
	// Client names your software in the hub's logs ("acme-bridge/2.1").
	Client string

	// OnEvent receives each event, one at a time, in order. Return nil
	// once the event is safely handled (stored, forwarded): it is then
	// acknowledged. Returning an error drops the connection without
	// acknowledging, so the event comes again after the reconnection.
	// Handlers must be idempotent: an event may come twice (at-least-once)
	// if a connection ends between your handling and the acknowledgement.
	OnEvent func(ctx context.Context, ev *Event) error
	// OnUserRevoked is told that a bound practitioner lost their
	// authorisation; their binding is gone.
	OnUserRevoked func(ctx context.Context, r UserRevoked)
	// OnOperatorSuspended is told that your operator was suspended or
	// revoked; the connection ends right after.
	OnOperatorSuspended func(ctx context.Context, s OperatorSuspended)
	// OnConnect runs at each (re)connection, before that connection's
	// events; requests may be made from it.
	OnConnect func(ctx context.Context, w Welcome)
	// OnDisconnect is told why a connection ended.
	OnDisconnect func(err error)

	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (500 ms and 30 s): it doubles from MinBackoff at each
	// failed attempt, with random jitter so a fleet of bridges does not
	// reconnect in step after a hub restart.
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds requests whose context has no deadline (30 s).
	RequestTimeout time.Duration
	// Header is added to the WebSocket handshake (a proxy's needs).
	Header http.Header
	// TLSConfig for wss:// (nil: the system's roots).
	TLSConfig *tls.Config
	// Logger (nil: nothing is logged). The SDK never logs message content.
	Logger *slog.Logger
}

// Client is a bridge's connection to the hub. Its methods are safe for
// concurrent use.
type Client struct {
	cfg      Config
	endpoint string
	log      *slog.Logger
	nextID   atomic.Uint64

	mu        sync.Mutex
	cur       *session
	connected chan struct{} // closed while cur != nil
	running   bool
}

// New checks cfg and returns a client; call Run to connect.
func New(cfg Config) (*Client, error) {
	if cfg.Token == "" {
		return nil, errors.New("sdk: Config.Token is required")
	}
	ep, err := endpoint(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, endpoint: ep, log: cfg.Logger, connected: make(chan struct{})}, nil
}

// endpoint turns the configured URL into the WebSocket endpoint.
func endpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("sdk: Config.URL %q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https", "wss":
		u.Scheme = "wss"
	case "http", "ws":
		u.Scheme = "ws"
	default:
		return "", fmt.Errorf("sdk: Config.URL %q: scheme must be https, wss, http or ws", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = Path
	}
	return u.String(), nil
}

// Run connects and keeps the connection up until ctx ends (it then
// returns nil) or the hub refuses the bridge for good: a wrong token, a
// revoked bridge or operator (it returns that *Error; see Fatal). Other
// failures, a suspended operator included, are retried with backoff.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("sdk: Run is already running")
	}
	c.running = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()
	attempt := 0
	for {
		start := time.Now()
		established, err := c.connectOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if c.cfg.OnDisconnect != nil && err != nil {
			c.cfg.OnDisconnect(err)
		}
		if Fatal(err) {
			c.log.Error("bridge refused by the hub for good", "err", err)
			return err
		}
		// A connection that held a while resets the backoff; one dropped
		// at once (two bridges with one token replacing each other)
		// keeps growing it.
		if established && time.Since(start) > 10*time.Second {
			attempt = 0
		}
		wait := c.backoff(attempt)
		attempt++
		c.log.Info("bridge disconnected; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is the wait before reconnection attempt n (0-based): doubling
// from MinBackoff up to MaxBackoff, then a random point in its upper half
// ("equal jitter"), so waits grow but bridges spread out.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MinBackoff
	for i := 0; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// WaitConnected waits until a connection is established and returns its
// welcome.
func (c *Client) WaitConnected(ctx context.Context) (Welcome, error) {
	s, err := c.session(ctx)
	if err != nil {
		return Welcome{}, err
	}
	return s.welcome, nil
}

// session returns the live session, waiting for one.
func (c *Client) session(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, ch := c.cur, c.connected
		c.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *Client) setSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = s
	close(c.connected)
}

// clearSession forgets s as soon as it ends, so requests wait for the
// next connection instead of finding a dead one.
func (c *Client) clearSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == s {
		c.cur = nil
		c.connected = make(chan struct{})
	}
}

// reply is the hub's answer to one request.
type reply struct {
	result json.RawMessage
	err    error
}

// session is one connection.
type session struct {
	client  *Client
	ws      *websocket.Conn
	welcome Welcome

	wmu sync.Mutex // one writer at a time (gorilla's rule)

	pmu     sync.Mutex
	pending map[string]chan reply
	// slots bounds requests in flight to the hub's max_inflight_requests:
	// more would only queue in the hub, where a full queue stops it
	// reading this socket, acknowledgements included.
	slots chan struct{}

	done    chan struct{}
	endOnce sync.Once
	endErr  error

	qmu   sync.Mutex
	queue []json.RawMessage // events and pushes, in arrival order
	qwake chan struct{}
}

func (s *session) end(err error) {
	s.endOnce.Do(func() {
		s.endErr = err
		s.client.clearSession(s)
		close(s.done)
		s.pmu.Lock()
		for id, ch := range s.pending {
			ch <- reply{err: ErrDisconnected}
			delete(s.pending, id)
		}
		s.pmu.Unlock()
	})
}

func (s *session) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.ws.SetWriteDeadline(time.Now().Add(15 * time.Second))
	return s.ws.WriteMessage(websocket.TextMessage, b)
}

// readTimeout: the hub pings every 20 s; three missed pings is a dead
// connection even if TCP has not noticed.
const readTimeout = 70 * time.Second

// connectOnce runs one connection to its end. established reports whether
// the handshake succeeded (the backoff restarts then).
func (c *Client) connectOnce(ctx context.Context) (established bool, err error) {
	d := websocket.Dialer{HandshakeTimeout: 15 * time.Second, TLSClientConfig: c.cfg.TLSConfig, Proxy: http.ProxyFromEnvironment}
	ws, resp, err := d.DialContext(ctx, c.endpoint, c.cfg.Header)
	if err != nil {
		if resp != nil {
			return false, fmt.Errorf("sdk: connect: %w (HTTP %d)", err, resp.StatusCode)
		}
		return false, fmt.Errorf("sdk: connect: %w", err)
	}
	defer ws.Close()
	s := &session{client: c, ws: ws, pending: map[string]chan reply{}, done: make(chan struct{}), qwake: make(chan struct{}, 1)}
	if err := s.write(map[string]any{"type": "hello", "protocol": ProtocolVersion, "token": c.cfg.Token, "client": c.cfg.Client}); err != nil {
		return false, fmt.Errorf("sdk: hello: %w", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	w, err := readWelcome(ws)
	if err != nil {
		return false, err
	}
	s.welcome = w
	if n := w.Limits.MaxInflightRequests; n > 0 {
		s.slots = make(chan struct{}, n)
	}
	c.log.Info("bridge connected", "bridge", w.BridgeID, "users", len(w.Users), "resumed", w.Resumed, "cursor", w.Cursor)

	extend := func() { _ = ws.SetReadDeadline(time.Now().Add(readTimeout)) }
	extend()
	ws.SetPingHandler(func(data string) error {
		extend()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.end(c.read(s, extend))
	}()
	c.setSession(s)
	defer c.clearSession(s)

	dispatchErr := c.dispatch(ctx, s)
	if ctx.Err() != nil {
		// A clean goodbye: acknowledgements already written go first,
		// then the close frame, so the hub records them.
		s.wmu.Lock()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(2*time.Second))
		s.wmu.Unlock()
		select {
		case <-readerDone:
		case <-time.After(2 * time.Second):
		}
		s.end(ctx.Err())
		return true, nil
	}
	if dispatchErr != nil {
		s.end(dispatchErr)
	}
	_ = ws.Close()
	<-readerDone
	return true, s.endErr
}

// readWelcome waits for the handshake's answer.
func readWelcome(ws *websocket.Conn) (Welcome, error) {
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return Welcome{}, fmt.Errorf("sdk: handshake: %w", err)
		}
		var f struct {
			Type string `json:"type"`
			wireError
			Welcome
		}
		if err := json.Unmarshal(data, &f); err != nil {
			return Welcome{}, fmt.Errorf("sdk: handshake: %w", err)
		}
		switch f.Type {
		case "welcome":
			return f.Welcome, nil
		case "error":
			return Welcome{}, f.wireError.err()
		}
	}
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
	// RetryAfterMS comes with EIMIS_RATE_LIMITED.
	RetryAfterMS int64 `json:"retry_after_ms"`
}

func (w wireError) err() *Error {
	return &Error{Code: w.Code, Message: w.Message, Field: w.Field, RetryAfter: time.Duration(w.RetryAfterMS) * time.Millisecond}
}

// read handles the hub's frames until the connection ends; it returns why.
func (c *Client) read(s *session, alive func()) error {
	var last error
	for {
		_, data, err := s.ws.ReadMessage()
		if err != nil {
			// The hub says why before closing: prefer its error frame.
			if last != nil {
				return last
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Text != "" {
				return &Error{Code: ce.Text, Message: "connection closed by the hub"}
			}
			return fmt.Errorf("sdk: read: %w", err)
		}
		alive()
		var head struct {
			Type string `json:"type"`
			ID   string `json:"id"`
			wireError
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			c.log.Warn("undecodable frame from the hub", "err", err)
			continue
		}
		switch head.Type {
		case "result", "error":
			if head.ID == "" {
				// About the connection: the hub closes next.
				last = head.wireError.err()
				c.log.Warn("hub error", "code", head.Code, "message", head.Message, "field", head.Field)
				continue
			}
			s.pmu.Lock()
			ch := s.pending[head.ID]
			delete(s.pending, head.ID)
			s.pmu.Unlock()
			if ch == nil {
				continue // the caller gave up
			}
			if head.Type == "error" {
				ch <- reply{err: head.wireError.err()}
			} else {
				ch <- reply{result: head.Result}
			}
		case "event", "user_revoked", "operator_suspended":
			if head.Type == "operator_suspended" {
				var o OperatorSuspended
				_ = json.Unmarshal(data, &o)
				last = &Error{Code: o.Code, Message: o.Reason}
			}
			// The queue is bounded by the hub: it sends at most
			// max_unacked events before an acknowledgement.
			s.qmu.Lock()
			s.queue = append(s.queue, data)
			s.qmu.Unlock()
			select {
			case s.qwake <- struct{}{}:
			default:
			}
		}
	}
}

// dispatch runs the handlers in order until the session ends. It returns
// a handler's error (which ends the session unacknowledged).
func (c *Client) dispatch(ctx context.Context, s *session) error {
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect(ctx, s.welcome)
	}
	for {
		s.qmu.Lock()
		var next json.RawMessage
		if len(s.queue) > 0 {
			next = s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
		s.qmu.Unlock()
		if next == nil {
			select {
			case <-s.qwake:
				continue
			case <-s.done:
				return nil
			case <-ctx.Done():
				return nil
			}
		}
		if err := c.handle(ctx, s, next); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

type wireEvent struct {
	Type        string          `json:"type"`
	Cursor      string          `json:"cursor"`
	RoomID      RoomID          `json:"room_id"`
	Users       []UserID        `json:"users"`
	Event       json.RawMessage `json:"event"`
	InviteState []StrippedState `json:"invite_state"`
}

type clientEvent struct {
	EventID        EventID         `json:"event_id"`
	Type           string          `json:"type"`
	Sender         UserID          `json:"sender"`
	StateKey       *string         `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	OriginServerTS int64           `json:"origin_server_ts"`
	Redacts        EventID         `json:"redacts"`
}

func (c *Client) handle(ctx context.Context, s *session, data json.RawMessage) error {
	var f wireEvent
	if err := json.Unmarshal(data, &f); err != nil {
		return nil
	}
	switch f.Type {
	case "user_revoked":
		var r UserRevoked
		_ = json.Unmarshal(data, &r)
		if c.cfg.OnUserRevoked != nil {
			c.cfg.OnUserRevoked(ctx, r)
		}
		return nil
	case "operator_suspended":
		var o OperatorSuspended
		_ = json.Unmarshal(data, &o)
		if c.cfg.OnOperatorSuspended != nil {
			c.cfg.OnOperatorSuspended(ctx, o)
		}
		return nil
	}
	var ce clientEvent
	if err := json.Unmarshal(f.Event, &ce); err != nil {
		c.log.Warn("undecodable event", "cursor", f.Cursor, "err", err)
		return s.write(map[string]string{"type": "ack", "cursor": f.Cursor})
	}
	ev := &Event{
		Cursor: f.Cursor, RoomID: f.RoomID, Users: f.Users, ID: ce.EventID, Type: ce.Type, Sender: ce.Sender,
		StateKey: ce.StateKey, Content: ce.Content, Timestamp: time.UnixMilli(ce.OriginServerTS), Redacts: ce.Redacts,
		InviteState: f.InviteState, Raw: f.Event,
	}
	if c.cfg.OnEvent != nil {
		if err := c.cfg.OnEvent(ctx, ev); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Warn("event handler failed; the event will come again after reconnecting", "event_id", ev.ID, "err", err)
			return fmt.Errorf("sdk: event handler: %w", err)
		}
	}
	if ctx.Err() != nil && c.cfg.OnEvent != nil {
		// The handler may have been cut short by the shutdown: do not
		// acknowledge what it may not have finished.
		return nil
	}
	if err := s.write(map[string]string{"type": "ack", "cursor": f.Cursor}); err != nil {
		return fmt.Errorf("sdk: ack: %w", err)
	}
	return nil
}

// notRetried are the requests that would do their work twice if sent
// again after a disconnection that hid whether the hub got them. The
// others are safe to repeat: sends and edits carry their transaction ID,
// and the rest set a state or read.
var notRetried = map[string]bool{"create_room": true, "upload": true}

// do sends one request and decodes its result into out. A request cut by
// a disconnection is sent again on the next connection, unless repeating
// it could do its work twice (ErrDisconnected then).
func (c *Client) do(ctx context.Context, req map[string]any, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	for {
		err := c.doOnce(ctx, req, out)
		if !errors.Is(err, ErrDisconnected) || notRetried[req["type"].(string)] || ctx.Err() != nil {
			return err
		}
		c.log.Debug("request cut by a disconnection; sending it again", "type", req["type"])
	}
}

func (c *Client) doOnce(ctx context.Context, req map[string]any, out any) error {
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-s.done:
			return ErrDisconnected
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rid := strconv.FormatUint(c.nextID.Add(1), 36)
	req["id"] = rid
	ch := make(chan reply, 1)
	s.pmu.Lock()
	select {
	case <-s.done:
		s.pmu.Unlock()
		return ErrDisconnected
	default:
	}
	s.pending[rid] = ch
	s.pmu.Unlock()
	if err := s.write(req); err != nil {
		s.pmu.Lock()
		delete(s.pending, rid)
		s.pmu.Unlock()
		return ErrDisconnected
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(r.result, out); err != nil {
			return fmt.Errorf("sdk: decode %s result: %w", req["type"], err)
		}
		return nil
	case <-ctx.Done():
		s.pmu.Lock()
		delete(s.pending, rid)
		s.pmu.Unlock()
		return ctx.Err()
	}
}

// Bind makes the bridge act for a practitioner of the health directory,
// from now on and across reconnections, once they consented: the first
// bind of a practitioner needs a proof of their consent, BindWithLinkCode
// or BindWithProof; Bind alone works for a practitioner already bound
// (ErrConsentRequired otherwise). The hub checks the directory
// (refusals: ErrNotInDirectory, ErrInactivePractitioner…) and creates the
// practitioner's account if they have none. Several bridges may bind the
// same practitioner (one per app they use): each receives their events.
func (c *Client) Bind(ctx context.Context, idNat string) (*BoundUser, error) {
	return c.bind(ctx, idNat, "", "")
}

// BindWithLinkCode is Bind with the practitioner's consent: the one-time
// link code (XXXX-XXXX) they obtained from a session of their own on the
// hub and typed into your app. A wrong, used or expired code is
// ErrLinkCodeInvalid; after too many wrong codes the hub refuses codes
// from the bridge for a while (ErrLinkCodeAttempts).
func (c *Client) BindWithLinkCode(ctx context.Context, idNat, linkCode string) (*BoundUser, error) {
	return c.bind(ctx, idNat, linkCode, "")
}

// BindWithProof is Bind with the practitioner's consent shown by their
// Pro Santé Connect access token, the only proof hubs that set
// bridge_require_psc_proof accept (ErrPSCProofNeeded otherwise).
func (c *Client) BindWithProof(ctx context.Context, idNat, pscProof string) (*BoundUser, error) {
	return c.bind(ctx, idNat, "", pscProof)
}

func (c *Client) bind(ctx context.Context, idNat, linkCode, pscProof string) (*BoundUser, error) {
	req := map[string]any{"type": "bind", "idnat": idNat}
	if linkCode != "" {
		req["link_code"] = linkCode
	}
	if pscProof != "" {
		req["psc_proof"] = pscProof
	}
	var out BoundUser
	if err := c.do(ctx, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unbind stops acting for a practitioner; it reports whether they were
// bound.
func (c *Client) Unbind(ctx context.Context, idNat string) (bool, error) {
	var out struct {
		Unbound bool `json:"unbound"`
	}
	err := c.do(ctx, map[string]any{"type": "unbind", "idnat": idNat}, &out)
	return out.Unbound, err
}

// CreateRoom creates a room as a bound user and returns its ID.
func (c *Client) CreateRoom(ctx context.Context, r CreateRoom) (RoomID, error) {
	req := map[string]any{"type": "create_room", "user": r.As}
	if r.Name != "" {
		req["name"] = r.Name
	}
	if r.Topic != "" {
		req["topic"] = r.Topic
	}
	if len(r.Invite) > 0 {
		req["invite"] = r.Invite
	}
	if r.IsDirect {
		req["is_direct"] = true
	}
	var out struct {
		RoomID RoomID `json:"room_id"`
	}
	err := c.do(ctx, req, &out)
	return out.RoomID, err
}

// RoomInfo returns a room's name, topic and members, for a bound user
// who is in it or invited.
func (c *Client) RoomInfo(ctx context.Context, as string, room RoomID) (*RoomInfo, error) {
	var out RoomInfo
	if err := c.do(ctx, map[string]any{"type": "room_info", "user": as, "room_id": room}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// History returns the latest events (at most limit, 1 to 100; 0 for the
// hub's default of 20) of a room a bound user may see, oldest first. The
// live feed carries only what happens while the user is a member: after
// joining, an app asks here for what came before, as a Matrix client
// reads /messages. The hub's history visibility applies, so a room that
// hides its past from newcomers answers only what followed the join.
// The events have no cursor: they are not acknowledged.
func (c *Client) History(ctx context.Context, as string, room RoomID, limit int) ([]*Event, error) {
	req := map[string]any{"type": "history", "user": as, "room_id": room}
	if limit > 0 {
		req["limit"] = limit
	}
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := c.do(ctx, req, &out); err != nil {
		return nil, err
	}
	evs := make([]*Event, 0, len(out.Events))
	for _, raw := range out.Events {
		var ce clientEvent
		if err := json.Unmarshal(raw, &ce); err != nil {
			return nil, fmt.Errorf("sdk: history: %w", err)
		}
		evs = append(evs, &Event{RoomID: room, ID: ce.EventID, Type: ce.Type, Sender: ce.Sender, StateKey: ce.StateKey,
			Content: ce.Content, Timestamp: time.UnixMilli(ce.OriginServerTS), Redacts: ce.Redacts, Raw: raw})
	}
	return evs, nil
}

type eventResult struct {
	EventID EventID `json:"event_id"`
}

// Join makes a bound user join a room (accept an invite).
func (c *Client) Join(ctx context.Context, as string, room RoomID) (EventID, error) {
	var out eventResult
	err := c.do(ctx, map[string]any{"type": "join", "user": as, "room_id": room}, &out)
	return out.EventID, err
}

// Invite makes a bound user invite someone (idNat or user ID).
func (c *Client) Invite(ctx context.Context, as string, room RoomID, invitee string) (EventID, error) {
	var out eventResult
	err := c.do(ctx, map[string]any{"type": "invite", "user": as, "room_id": room, "invitee": invitee}, &out)
	return out.EventID, err
}

// Leave makes a bound user leave a room, or decline an invite.
func (c *Client) Leave(ctx context.Context, as string, room RoomID, reason string) (EventID, error) {
	req := map[string]any{"type": "leave", "user": as, "room_id": room}
	if reason != "" {
		req["reason"] = reason
	}
	var out eventResult
	err := c.do(ctx, req, &out)
	return out.EventID, err
}

// Send sends a message as a bound user and returns its event ID. Retrying
// with the same TxnID is safe: it is one message.
func (c *Client) Send(ctx context.Context, m Message) (EventID, error) {
	if m.Type == "" {
		m.Type = MsgText
	}
	req := map[string]any{"type": "send", "user": m.As, "room_id": m.RoomID, "txn_id": m.TxnID, "msgtype": m.Type, "body": m.Body}
	if m.HTML != "" {
		req["format"], req["formatted_body"] = "org.matrix.custom.html", m.HTML
	}
	if m.ReplyTo != "" {
		req["reply_to"] = m.ReplyTo
	}
	if m.URL != "" {
		req["url"] = m.URL
	}
	if m.Filename != "" {
		req["filename"] = m.Filename
	}
	if m.Info != nil {
		req["info"] = m.Info
	}
	var out eventResult
	err := c.do(ctx, req, &out)
	return out.EventID, err
}

// SendText sends a plain text message.
func (c *Client) SendText(ctx context.Context, as string, room RoomID, txnID, text string) (EventID, error) {
	return c.Send(ctx, Message{As: as, RoomID: room, TxnID: txnID, Body: text})
}

// Edit replaces the text of one of the user's earlier messages.
func (c *Client) Edit(ctx context.Context, e Edit) (EventID, error) {
	if e.Type == "" {
		e.Type = MsgText
	}
	req := map[string]any{"type": "edit", "user": e.As, "room_id": e.RoomID, "txn_id": e.TxnID, "event_id": e.EventID,
		"msgtype": e.Type, "body": e.Body}
	if e.HTML != "" {
		req["format"], req["formatted_body"] = "org.matrix.custom.html", e.HTML
	}
	var out eventResult
	err := c.do(ctx, req, &out)
	return out.EventID, err
}

// ReadReceipt marks a room as read by a bound user up to an event.
func (c *Client) ReadReceipt(ctx context.Context, as string, room RoomID, event EventID) error {
	return c.do(ctx, map[string]any{"type": "read_receipt", "user": as, "room_id": room, "event_id": event}, nil)
}

// Typing shows (or stops showing) a bound user typing, for up to timeout
// (0: 30 s; at most 2 minutes).
func (c *Client) Typing(ctx context.Context, as string, room RoomID, typing bool, timeout time.Duration) error {
	req := map[string]any{"type": "typing", "user": as, "room_id": room, "typing": typing}
	if timeout > 0 {
		req["timeout_ms"] = min(timeout.Milliseconds(), 120000)
	}
	return c.do(ctx, req, nil)
}

// SearchDirectory finds active practitioners by name, profession or city
// words, or by idNat (limit 1–50; 0 means 10).
func (c *Client) SearchDirectory(ctx context.Context, query string, limit int) ([]Practitioner, error) {
	req := map[string]any{"type": "directory_search", "query": query}
	if limit > 0 {
		req["limit"] = min(limit, 50)
	}
	var out struct {
		Results []Practitioner `json:"results"`
	}
	err := c.do(ctx, req, &out)
	return out.Results, err
}

// Upload stores a small file through the socket and returns its mxc://
// URI, to send with a MsgImage or MsgFile message. The whole request must
// fit the hub's frame limit (Welcome.Limits.MaxFrameBytes, base64 adds a
// third): larger files go through the hub's Matrix media endpoint (see
// docs/bridge-protocol.md). ErrUnsupported when the hub has no media
// store.
func (c *Client) Upload(ctx context.Context, as, contentType, filename string, data []byte) (string, error) {
	if s, err := c.session(ctx); err == nil && s.welcome.Limits.MaxFrameBytes > 0 &&
		base64.StdEncoding.EncodedLen(len(data))+len(filename)+len(contentType)+256 > s.welcome.Limits.MaxFrameBytes {
		return "", &Error{Code: ErrFrameTooLarge.Code, Message: "file too large for an upload through the socket; use the media endpoint"}
	}
	req := map[string]any{"type": "upload", "user": as, "content_type": contentType, "data": base64.StdEncoding.EncodeToString(data)}
	if filename != "" {
		req["filename"] = filename
	}
	var out struct {
		ContentURI string `json:"content_uri"`
	}
	err := c.do(ctx, req, &out)
	return out.ContentURI, err
}
