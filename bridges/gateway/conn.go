package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
)

// Goroutines of a connection, all started by run:
//
//   - run itself: handshake, then the reader (frames from the bridge);
//   - writer: the only one writing to the socket (frames, pings, close);
//   - pump: pulls the bridge's feed, routes and sends events;
//   - workers: handle requests, one room always on the same worker;
//   - acker: acknowledges to JetStream, coalescing and in order.
//
// Locking: mu guards the users and memberships, fmu the delivery state,
// ackMu the next acknowledgement. No goroutine holds two of them at once.

// memb is a bound user's membership of a room and the position of the
// membership event that set it.
type memb struct {
	membership string
	pos        int64
}

// sent is an event delivered and not yet acknowledged by the bridge.
type sent struct {
	seq uint64
	msg *bus.FeedMsg
}

type conn struct {
	g      *Gateway
	ws     *websocket.Conn
	lim    Limits
	log    *slog.Logger
	remote string

	bridge *store.Bridge
	// device scopes the bridge's transaction IDs in the txns table, the
	// way a Matrix client's device does: a retried send of this bridge
	// finds its event, and two bridges never collide.
	device string

	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte
	done   chan struct{}

	stopOnce   sync.Once
	finalFrame [][]byte
	closeCode  int
	closeText  string

	mu      sync.Mutex
	bound   map[id.UserID]bool
	members map[string]map[id.UserID]memb
	revoked map[id.UserID]bool

	fmu           sync.Mutex
	feed          *bus.BridgeFeed
	outstanding   []sent
	held          *bus.FeedMsg // the last message processed
	lastSeq       uint64
	lastDelivered uint64
	filtered      int
	progress      time.Time
	ackSignal     chan struct{}

	ackMu   sync.Mutex
	ackNext *bus.FeedMsg
	ackWake chan struct{}
	ackStop chan struct{}

	workers []chan Frame
}

func newConn(g *Gateway, ws *websocket.Conn, remote string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		g: g, ws: ws, lim: g.cfg.Limits, log: g.log.With("remote", remote), remote: remote,
		ctx: ctx, cancel: cancel,
		out:       make(chan []byte, g.cfg.Limits.SendQueue),
		done:      make(chan struct{}),
		bound:     map[id.UserID]bool{},
		members:   map[string]map[id.UserID]memb{},
		revoked:   map[id.UserID]bool{},
		ackSignal: make(chan struct{}, 1),
		ackWake:   make(chan struct{}, 1),
		ackStop:   make(chan struct{}),
	}
}

// run serves the connection to its end.
func (c *conn) run() {
	defer close(c.done)
	defer c.cancel()
	var wg sync.WaitGroup
	wg.Go(c.writer)
	ackerDone := make(chan struct{})
	if c.handshake() {
		go func() {
			defer close(ackerDone)
			c.acker()
		}()
		wg.Go(c.pump)
		for i := range c.workers {
			wg.Go(func() { c.worker(c.workers[i]) })
		}
		c.reader()
	} else {
		close(ackerDone)
	}
	c.shutdown(nil, websocket.CloseNormalClosure)
	wg.Wait()
	// The pump has stopped: whatever it left to acknowledge is queued.
	close(c.ackStop)
	<-ackerDone
	if c.bridge != nil {
		c.g.unregister(c)
		c.log.Info("bridge disconnected", "reason", c.closeText)
	}
}

// shutdown ends the connection once: e, when set, is the last frame (an
// error frame whose code is also the close reason), after pre.
func (c *conn) shutdown(e *Error, closeCode int, pre ...[]byte) {
	c.stopOnce.Do(func() {
		c.finalFrame = pre
		c.closeCode = closeCode
		if e != nil {
			c.finalFrame = append(c.finalFrame, encodeError("", e))
			c.closeText = e.Code
		}
		c.cancel()
	})
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the hub's own structs are encoded here.
		panic("gateway: encode frame: " + err.Error())
	}
	return b
}

func encodeError(reqID string, e *Error) []byte {
	f := errorFrame{Type: "error", ID: reqID, Code: e.Code, Message: e.Message, Field: e.Field}
	if e.RetryAfter > 0 {
		f.RetryAfterMS = max(1, int64((e.RetryAfter+time.Millisecond-1)/time.Millisecond))
	}
	return encode(f)
}

// send queues a frame for the socket. A queue that stays full for
// StallTimeout means the bridge stopped reading: the connection closes
// (what it had not acknowledged is delivered again next time).
func (c *conn) send(b []byte) bool {
	select {
	case c.out <- b:
		return true
	case <-c.ctx.Done():
		return false
	default:
	}
	t := time.NewTimer(c.lim.StallTimeout)
	defer t.Stop()
	select {
	case c.out <- b:
		return true
	case <-c.ctx.Done():
		return false
	case <-t.C:
		c.shutdown(errf(CodeSlowConsumer, "", ""), websocket.CloseTryAgainLater)
		return false
	}
}

func (c *conn) sendError(reqID string, e *Error) { c.send(encodeError(reqID, e)) }

// writer owns the socket's write side.
func (c *conn) writer() {
	ping := time.NewTicker(c.lim.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.ctx.Done():
			c.finish()
			return
		case b := <-c.out:
			_ = c.ws.SetWriteDeadline(time.Now().Add(c.lim.WriteTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				c.log.Debug("bridge write failed", "err", err)
				c.shutdown(nil, websocket.CloseAbnormalClosure)
				c.finish()
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.lim.WriteTimeout)); err != nil {
				c.shutdown(nil, websocket.CloseAbnormalClosure)
				c.finish()
				return
			}
		}
	}
}

// finish writes the final frames and the close frame, then closes the
// socket, which ends the reader.
func (c *conn) finish() {
	deadline := time.Now().Add(2 * time.Second)
	_ = c.ws.SetWriteDeadline(deadline)
	for _, b := range c.finalFrame {
		if c.ws.WriteMessage(websocket.TextMessage, b) != nil {
			break
		}
	}
	code := c.closeCode
	if code == 0 {
		code = websocket.CloseNormalClosure
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, c.closeText), deadline)
	_ = c.ws.Close()
}

// errGrossFrame ends the connection: the frame is too large to even skip.
var errGrossFrame = errors.New("frame far over the limit")

// readFrame reads one message, refusing oversize ones without holding
// them: up to MaxFrameBytes is kept, the rest of a larger frame is
// skipped (answered with EIMIS_FRAME_TOO_LARGE), and one beyond
// CloseFrameBytes closes the connection.
func (c *conn) readFrame() ([]byte, *Error, error) {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(c.lim.MaxFrameBytes)+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > c.lim.MaxFrameBytes {
		n, err := io.Copy(io.Discard, io.LimitReader(r, int64(c.lim.CloseFrameBytes-len(data))+1))
		if err != nil {
			return nil, nil, err
		}
		if int64(len(data))+n > int64(c.lim.CloseFrameBytes) {
			c.shutdown(errf(CodeFrameTooLarge, "", "frame far over the limit of "+strconv.Itoa(c.lim.MaxFrameBytes)+" bytes"),
				websocket.CloseMessageTooBig)
			return nil, nil, errGrossFrame
		}
		return nil, errf(CodeFrameTooLarge, "", "frame of "+strconv.FormatInt(int64(len(data))+n, 10)+
			" bytes; the limit is "+strconv.Itoa(c.lim.MaxFrameBytes)), nil
	}
	if mt != websocket.TextMessage {
		return nil, errf(CodeBadFrame, "", "frames are JSON in text messages"), nil
	}
	return data, nil, nil
}

// handshake waits for a valid hello and sets the connection up. Invalid
// frames are answered and the bridge may try again, within the timeout.
func (c *conn) handshake() bool {
	_ = c.ws.SetReadDeadline(time.Now().Add(c.lim.HandshakeTimeout))
	for attempts := 0; ; attempts++ {
		if attempts == 10 {
			c.shutdown(errf(CodeHelloRequired, "", "too many frames without a valid hello"), websocket.ClosePolicyViolation)
			return false
		}
		data, perr, err := c.readFrame()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				c.shutdown(errf(CodeHelloRequired, "", "no valid hello in time"), websocket.ClosePolicyViolation)
			}
			return false
		}
		if perr != nil {
			c.sendError("", perr)
			continue
		}
		f, reqID, e := c.g.dec.Decode(data)
		if e != nil {
			c.sendError(reqID, e)
			continue
		}
		if f.Type != "hello" {
			c.sendError(f.ID, errf(CodeHelloRequired, "/type", ""))
			continue
		}
		var h helloFrame
		if err := json.Unmarshal(f.Raw, &h); err != nil {
			c.sendError("", errf(CodeBadFrame, "", ""))
			continue
		}
		if h.Protocol != ProtocolVersion {
			c.sendError("", errf(CodeUnsupportedVersion, "/protocol", ""))
			continue
		}
		return c.authenticate(h)
	}
}

func (c *conn) authenticate(h helloFrame) bool {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	b, err := c.g.cfg.Store.BridgeByTokenHash(ctx, HashToken(h.Token))
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.log.Warn("bridge refused: unknown token")
		c.g.cfg.Refusals.Refused(ctx, door.Refusal{Door: door.Of(door.Bridge, ""), Code: string(CodeBadToken), Action: "bridge.connect"})
		c.shutdown(errf(CodeBadToken, "/token", ""), websocket.ClosePolicyViolation)
		return false
	case err != nil:
		c.log.Error("bridge token look-up", "err", err)
		c.shutdown(errf(CodeUnavailable, "", ""), websocket.CloseInternalServerErr)
		return false
	case b.Revoked():
		c.log.Warn("bridge refused: revoked", "bridge", b.ID)
		c.g.cfg.Refusals.Refused(ctx, door.Refusal{Door: door.Of(door.Bridge, b.ID), Code: string(CodeBridgeRevoked), Action: "bridge.connect"})
		c.shutdown(errf(CodeBridgeRevoked, "", ""), websocket.ClosePolicyViolation)
		return false
	}
	if _, err := c.g.cfg.Operators.Check(b.OperatorID); err != nil {
		c.log.Warn("bridge refused: operator", "bridge", b.ID, "operator", b.OperatorID, "err", err)
		ref := refusalError(err, "")
		if ref == nil {
			ref = errf(CodeUnavailable, "", "")
		} else {
			c.g.cfg.Refusals.Refused(ctx, door.Refusal{Door: door.Of(door.Bridge, b.ID), Code: ref.Code, Action: "bridge.connect",
				Target: "operator:" + b.OperatorID})
		}
		c.shutdown(ref, websocket.ClosePolicyViolation)
		return false
	}
	c.bridge = b
	c.device = "EIMIS_BRIDGE_" + b.ID
	c.log = c.log.With("bridge", b.ID, "operator", b.OperatorID)
	return c.establish(ctx, h)
}

// establish registers the connection, loads its users and opens the feed.
func (c *conn) establish(ctx context.Context, h helloFrame) bool {
	old, err := c.g.register(c)
	if err != nil {
		c.shutdown(errf(CodeShuttingDown, "", ""), websocket.CloseGoingAway)
		return false
	}
	if old != nil {
		// The old connection records its last ack before the feed is
		// re-created at the ack floor.
		old.shutdown(errf(CodeReplaced, "", ""), websocket.CloseNormalClosure)
		select {
		case <-old.done:
		case <-time.After(10 * time.Second):
			c.log.Warn("replaced bridge connection slow to end")
		}
	}
	// An OnChange hook that fired between the first check and the
	// registration did not see this connection: check again.
	if _, err := c.g.cfg.Operators.Check(c.bridge.OperatorID); err != nil {
		c.shutdown(refusalError(err, ""), websocket.ClosePolicyViolation)
		return false
	}
	bindings, err := c.g.cfg.Store.Bindings(ctx, store.BindingFilter{Kind: store.BindingBridge, AppID: c.bridge.ID})
	if err != nil {
		c.log.Error("bridge users", "err", err)
		c.shutdown(errf(CodeUnavailable, "", ""), websocket.CloseInternalServerErr)
		return false
	}
	type gone struct {
		u           id.UserID
		code, cause string
	}
	var revoked []gone
	var boundIDs []string
	for _, b := range bindings {
		u := id.UserID(b.UserID)
		if !c.g.cfg.Consent.Honoured(b) {
			// Bound without consent (insecure mode since left, or before
			// consent was recorded): the practitioner must consent now.
			ref := &policy.Refusal{Code: policy.ConsentRequired, Subject: b.UserID}
			revoked = append(revoked, gone{u, string(ref.Code), ref.Error()})
			continue
		}
		if ref, ok := policy.AsRefusal(c.g.cfg.Policy.CheckUser(u)); ok && ref.Definite() {
			revoked = append(revoked, gone{u, string(ref.Code), ref.Error()})
			continue
		}
		if err := c.loadMemberships(ctx, u); err != nil {
			c.log.Error("bridge user memberships", "user", u, "err", err)
			c.shutdown(errf(CodeUnavailable, "", ""), websocket.CloseInternalServerErr)
			return false
		}
		boundIDs = append(boundIDs, b.UserID)
	}
	feed, err := c.g.cfg.Feeds.OpenBridgeFeed(ctx, c.bridge.ID, bus.BridgeFeedConfig{
		MaxAckPending: 4 * c.lim.MaxUnacked,
		AckWait:       c.lim.StallTimeout + time.Minute,
		Retention:     c.g.cfg.Retention,
		PullBatch:     64,
	})
	if err != nil {
		c.log.Error("bridge feed", "err", err)
		c.shutdown(errf(CodeUnavailable, "", ""), websocket.CloseInternalServerErr)
		return false
	}
	c.feed = feed
	c.fmu.Lock()
	c.lastSeq, c.lastDelivered = feed.AckFloor, feed.AckFloor
	c.fmu.Unlock()
	c.workers = make([]chan Frame, c.lim.Workers)
	for i := range c.workers {
		c.workers[i] = make(chan Frame, c.lim.WorkerQueue)
	}
	if boundIDs == nil {
		boundIDs = []string{}
	}
	c.send(encode(welcomeFrame{
		Type: "welcome", Protocol: ProtocolVersion, BridgeID: c.bridge.ID, Operator: c.bridge.OperatorID,
		ServerName: c.g.cfg.ServerName, Users: boundIDs, Cursor: strconv.FormatUint(feed.AckFloor, 10), Resumed: feed.Resumed,
		Limits: limits{
			MaxFrameBytes: c.lim.MaxFrameBytes, MaxUnacked: c.lim.MaxUnacked,
			// Half the queues' room: requests are spread over workers by
			// room, unevenly, and a full queue stops this connection's reads
			// (acks included); a client keeping to this bound (the SDK
			// does) almost never fills one.
			MaxInflightRequests: max(1, c.lim.Workers*c.lim.WorkerQueue/2),
		},
	}))
	for _, r := range revoked {
		c.revokeUser(r.u, r.code, r.cause)
	}
	c.log.Info("bridge connected", "users", len(boundIDs), "resumed", feed.Resumed, "client", truncate(h.Client, 64))
	return true
}

// loadMemberships records u as bound with its current memberships.
func (c *conn) loadMemberships(ctx context.Context, u id.UserID) error {
	mems, err := c.g.cfg.Store.UserMemberships(ctx, string(u))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bound[u] = true
	for _, m := range mems {
		rm := c.members[m.RoomID]
		if rm == nil {
			rm = map[id.UserID]memb{}
			c.members[m.RoomID] = rm
		}
		if cur, ok := rm[u]; !ok || m.Pos >= cur.pos {
			rm[u] = memb{m.Membership, m.Pos}
		}
	}
	return nil
}

func (c *conn) unbindLocal(u id.UserID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.bound, u)
	for room, rm := range c.members {
		delete(rm, u)
		if len(rm) == 0 {
			delete(c.members, room)
		}
	}
}

func (c *conn) isBound(u id.UserID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bound[u]
}

// revokeUser pushes user_revoked once and forgets the binding.
func (c *conn) revokeUser(u id.UserID, code, reason string) {
	c.mu.Lock()
	already := c.revoked[u]
	c.revoked[u] = true
	c.mu.Unlock()
	if already {
		return
	}
	c.unbindLocal(u)
	// Through the consent service, so that dropping a binding is audited
	// (by the hub) and announced; a binding already gone changes nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.g.cfg.Consent.Revoke(ctx, c.door(), u, audit.ActorHub); err != nil {
		c.log.Warn("unbind revoked user", "user", u, "err", err)
	}
	c.log.Info("bound user revoked", "user", u, "code", code)
	c.send(encode(userRevokedFrame{Type: "user_revoked", UserID: string(u), IDNat: u.Localpart(), Code: code, Reason: reason}))
}

// operatorSuspended closes the connection with a final push. It does no
// I/O itself: the registry calls it under its lock.
func (c *conn) operatorSuspended(operator, status, code, reason string) {
	push := encode(operatorSuspendedFrame{Type: "operator_suspended", Operator: operator, Status: status, Code: code, Reason: reason})
	c.shutdown(&Error{Code: code, Message: reason}, websocket.ClosePolicyViolation, push)
}

// reader reads the bridge's frames until the socket ends.
func (c *conn) reader() {
	alive := func() { _ = c.ws.SetReadDeadline(time.Now().Add(3 * c.lim.PingInterval)) }
	alive()
	c.ws.SetPongHandler(func(string) error {
		alive()
		return nil
	})
	for {
		data, perr, err := c.readFrame()
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Debug("bridge read ended", "err", err)
			}
			return
		}
		alive()
		if perr != nil {
			c.sendError("", perr)
			continue
		}
		f, reqID, e := c.g.dec.Decode(data)
		if e != nil {
			c.sendError(reqID, e)
			continue
		}
		switch f.Type {
		case "ack":
			c.handleAck(f)
		case "hello":
			c.sendError("", errf(CodeDuplicateHello, "/type", ""))
		default:
			w := c.workers[workerOf(f, len(c.workers))]
			select {
			case w <- f:
			case <-c.ctx.Done():
				return
			}
		}
	}
}

// workerOf keeps a room's requests on one worker, so they are handled in
// the order they came; requests without a room spread by user.
func workerOf(f Frame, n int) int {
	key := gjson.GetBytes(f.Raw, "room_id").Str
	if key == "" {
		key = gjson.GetBytes(f.Raw, "user").Str + gjson.GetBytes(f.Raw, "idnat").Str
	}
	if key == "" {
		key = f.ID
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

func (c *conn) worker(q chan Frame) {
	for {
		select {
		case <-c.ctx.Done():
			return
		case f := <-q:
			res, e := c.handle(f)
			if e != nil {
				c.sendError(f.ID, e)
				continue
			}
			c.send(encode(resultFrame{Type: "result", ID: f.ID, Result: res}))
		}
	}
}

// handleAck moves the bridge's position: everything delivered up to the
// cursor is done. The JetStream ack covers filtered messages too, up to
// the last one processed when nothing delivered is still pending.
func (c *conn) handleAck(f Frame) {
	var a ackFrame
	_ = json.Unmarshal(f.Raw, &a)
	seq, err := strconv.ParseUint(a.Cursor, 10, 64)
	if err != nil {
		c.sendError("", errf(CodeInvalidField, "/cursor", ""))
		return
	}
	c.fmu.Lock()
	if seq > c.lastDelivered {
		c.fmu.Unlock()
		c.sendError("", errf(CodeBadCursor, "/cursor", ""))
		return
	}
	n := 0
	for n < len(c.outstanding) && c.outstanding[n].seq <= seq {
		n++
	}
	if n == 0 {
		// Already acknowledged: acks may repeat.
		c.fmu.Unlock()
		return
	}
	target := c.outstanding[n-1].msg
	c.outstanding = c.outstanding[n:]
	c.progress = time.Now()
	if len(c.outstanding) == 0 {
		c.outstanding = nil
		c.filtered = 0
		if c.held != nil && c.held.Seq > target.Seq {
			target = c.held
		}
	}
	c.fmu.Unlock()
	c.queueAck(target)
	select {
	case c.ackSignal <- struct{}{}:
	default:
	}
}

func (c *conn) queueAck(m *bus.FeedMsg) {
	c.ackMu.Lock()
	if c.ackNext == nil || m.Seq > c.ackNext.Seq {
		c.ackNext = m
	}
	c.ackMu.Unlock()
	select {
	case c.ackWake <- struct{}{}:
	default:
	}
}

// acker sends acknowledgements to JetStream one at a time, always the
// latest, and waits for each: when the connection ends, its position is
// recorded before a new connection reads it.
func (c *conn) acker() {
	var done uint64
	flush := func() {
		c.ackMu.Lock()
		m := c.ackNext
		c.ackNext = nil
		c.ackMu.Unlock()
		if m == nil || m.Seq <= done {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.AckSync(ctx); err != nil {
			// The position stays where it was: the bridge gets these
			// events again after a reconnection (at-least-once).
			c.log.Debug("feed ack failed", "cursor", m.Seq, "err", err)
			return
		}
		done = m.Seq
	}
	for {
		select {
		case <-c.ackWake:
			flush()
		case <-c.ackStop:
			flush()
			return
		}
	}
}
