package gateway

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

const (
	// filteredAckEvery: with nothing delivered pending, the feed is
	// acknowledged after this many events that concerned none of the
	// bridge's users, so JetStream's pending count stays low, and at
	// every idle second.
	filteredAckEvery = 64
	// freshFor: an event younger than this is sent as the stream carries
	// it; an older one (a backlog) is re-read from the store, which has
	// redactions applied since.
	freshFor = 30 * time.Second
)

// pump moves events from the bridge's feed to the socket. It stops
// pulling while MaxUnacked events wait for an ack (JetStream keeps the
// rest), and closes the connection if the bridge makes no progress for
// StallTimeout.
func (c *conn) pump() {
	defer c.ackProcessed()
	// Stopping the feed also wakes a Next in progress, so a connection
	// being replaced hands over at once rather than after Next's wait.
	stopped := make(chan struct{})
	defer func() { <-stopped }()
	go func() {
		defer close(stopped)
		<-c.ctx.Done()
		c.feed.Stop()
	}()
	recheck := time.NewTicker(c.lim.RecheckInterval)
	defer recheck.Stop()
	for c.ctx.Err() == nil {
		select {
		case <-recheck.C:
			if !c.recheck() {
				return
			}
		default:
		}
		full, stalled := c.deliveryState()
		if stalled {
			c.log.Warn("bridge stalled: no acknowledgement in time", "timeout", c.lim.StallTimeout)
			c.shutdown(errf(CodeSlowConsumer, "", ""), websocket.CloseTryAgainLater)
			return
		}
		if full {
			select {
			case <-c.ackSignal:
			case <-time.After(time.Second):
			case <-c.ctx.Done():
			}
			continue
		}
		m, err := c.feed.Next(time.Second)
		if c.ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, bus.ErrFeedClosed):
			c.g.mu.Lock()
			closing := c.g.closed
			c.g.mu.Unlock()
			if closing {
				c.shutdown(errf(CodeShuttingDown, "", ""), websocket.CloseGoingAway)
			} else {
				c.log.Info("bridge feed closed (another connection took over, or the bus stopped)", "err", err)
				c.shutdown(errf(CodeReplaced, "", ""), websocket.CloseNormalClosure)
			}
			return
		case err != nil:
			c.log.Warn("bridge feed", "err", err)
			continue
		case m == nil:
			c.ackProcessed()
			continue
		}
		if !c.process(m) {
			return
		}
	}
}

// deliveryState reports whether the unacknowledged window is full and
// whether the bridge has stalled.
func (c *conn) deliveryState() (full, stalled bool) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	n := len(c.outstanding)
	return n >= c.lim.MaxUnacked, n > 0 && time.Since(c.progress) > c.lim.StallTimeout
}

// ackProcessed acknowledges everything processed when nothing delivered
// is pending.
func (c *conn) ackProcessed() {
	c.fmu.Lock()
	var m *bus.FeedMsg
	if len(c.outstanding) == 0 && c.held != nil {
		m = c.held
		c.filtered = 0
	}
	c.fmu.Unlock()
	if m != nil {
		c.queueAck(m)
	}
}

// recheck re-reads what may have changed behind the connection's back:
// the bridge revoked by the CLI, the operator changed on another
// instance (the OnChange hook covers this one's changes at once).
func (c *conn) recheck() bool {
	if _, err := c.g.cfg.Operators.Check(c.bridge.OperatorID); err != nil {
		if r, ok := operators.AsRefusal(err); ok && r.Definite() {
			status := "suspended"
			switch r.Code {
			case operators.CodeOperatorRevoked:
				status = "revoked"
			case operators.CodeUnknownOperator:
				status = "unknown"
			}
			c.operatorSuspended(c.bridge.OperatorID, status, string(r.Code), r.Error())
			return false
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	b, err := c.g.cfg.Store.GetBridge(ctx, c.bridge.ID)
	switch {
	case err == nil && b.Revoked(), errors.Is(err, store.ErrNotFound):
		c.log.Info("bridge revoked while connected")
		c.shutdown(errf(CodeBridgeRevoked, "", ""), websocket.ClosePolicyViolation)
		return false
	case err != nil && c.ctx.Err() == nil:
		c.log.Warn("bridge recheck", "err", err)
	}
	c.recheckBindings(ctx)
	return true
}

// recheckBindings drops users whose binding is gone from the store or no
// longer honoured: a revocation by the CLI, or by another instance whose
// announcement was lost, takes effect within RecheckInterval.
func (c *conn) recheckBindings(ctx context.Context) {
	// Read the users first: a bind records its binding before it marks
	// the user bound, so a user read here is in the store below unless
	// revoked.
	c.mu.Lock()
	bound := make([]id.UserID, 0, len(c.bound))
	for u := range c.bound {
		bound = append(bound, u)
	}
	c.mu.Unlock()
	if len(bound) == 0 {
		return
	}
	bs, err := c.g.cfg.Store.Bindings(ctx, store.BindingFilter{Kind: store.BindingBridge, AppID: c.bridge.ID})
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn("bridge recheck: bindings", "err", err)
		}
		return
	}
	ok := make(map[id.UserID]bool, len(bs))
	for _, b := range bs {
		ok[id.UserID(b.UserID)] = c.g.cfg.Consent.Honoured(b)
	}
	for _, u := range bound {
		if !ok[u] {
			c.revokeUser(u, string(policy.BindingRevoked), (&policy.Refusal{Code: policy.BindingRevoked, Subject: string(u)}).Error())
		}
	}
}

// process routes one event: to the bridge when it concerns one of its
// users, else it is only remembered for the next acknowledgement.
func (c *conn) process(m *bus.FeedMsg) bool {
	c.fmu.Lock()
	dup := m.Seq <= c.lastSeq
	c.fmu.Unlock()
	if dup {
		// A redelivery of something this connection already handled.
		return true
	}
	users, revs, err := c.route(m)
	if err != nil {
		// Without the membership history the hub cannot tell whether
		// the event concerns the bridge; skipping it could lose it.
		c.log.Error("route bridge event", "event_id", m.Event.EventID, errclass.Attr(err))
		c.shutdown(errf(CodeUnavailable, "", ""), websocket.CloseInternalServerErr)
		return false
	}
	var frame []byte
	if len(users) > 0 {
		if frame, err = c.eventFrame(m, users); err != nil {
			c.log.Error("bridge event frame", "event_id", m.Event.EventID, errclass.Attr(err))
			users = nil
		}
	}
	c.fmu.Lock()
	c.lastSeq = m.Seq
	c.held = m
	ackNow := false
	if len(users) == 0 {
		c.filtered++
		if len(c.outstanding) == 0 && c.filtered >= filteredAckEvery {
			ackNow, c.filtered = true, 0
		}
	} else {
		if len(c.outstanding) == 0 {
			c.progress = time.Now()
		}
		c.outstanding = append(c.outstanding, sent{m.Seq, m})
		c.lastDelivered = m.Seq
	}
	c.fmu.Unlock()
	if ackNow {
		c.queueAck(m)
	}
	if frame != nil && !c.send(frame) {
		return false
	}
	for _, r := range revs {
		c.revokeUser(r.user, string(r.code), r.reason)
	}
	return true
}

type revocation struct {
	user   id.UserID
	code   policy.Code
	reason string
}

// visible reports whether a member with this membership at an event may
// receive it. Only joined members do: an invitee gets its invite (with the
// room's stripped state) as the subject of that event, but not the room's
// messages before it joins, as a Matrix client would not under the hub's
// `shared` history visibility. Deny when unsure: stricter than `invited`
// or `world_readable` rooms would need, never looser.
func visible(membership string) bool { return membership == "join" }

// route decides which of the bridge's users an event concerns: those who
// were joined in its room at that event, and the subject of a membership
// event (so a bridge sees its users invited, kicked, leaving).
// Memberships come from memory; an event older than a user's latest known
// membership change (a backlog being replayed) asks the store what the
// membership was then.
func (c *conn) route(m *bus.FeedMsg) ([]string, []revocation, error) {
	ev := m.Event
	set := map[id.UserID]bool{}
	var subject id.UserID
	var lookups []id.UserID
	c.mu.Lock()
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		if u := id.UserID(*ev.StateKey); c.bound[u] {
			subject = u
			set[u] = true
			rm := c.members[ev.RoomID]
			if rm == nil {
				rm = map[id.UserID]memb{}
				c.members[ev.RoomID] = rm
			}
			if cur, ok := rm[u]; !ok || ev.Pos >= cur.pos {
				rm[u] = memb{ev.Membership, ev.Pos}
			}
		}
	}
	for u, mb := range c.members[ev.RoomID] {
		switch {
		case set[u] || !c.bound[u]:
		case mb.pos <= ev.Pos:
			if visible(mb.membership) {
				set[u] = true
			}
		default:
			lookups = append(lookups, u)
		}
	}
	c.mu.Unlock()
	if len(lookups) > 0 {
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		for _, u := range lookups {
			ms, err := c.g.cfg.Store.MembershipAt(ctx, ev.RoomID, string(u), ev.Pos)
			if err != nil {
				return nil, nil, err
			}
			if visible(ms) {
				set[u] = true
			}
		}
	}
	var revs []revocation
	// The trust keeper removes a practitioner by writing their own leave
	// in each room; if the policy now refuses them for good, that leave
	// is a revocation, whichever instance wrote it.
	if subject != "" && ev.Membership == "leave" && ev.Sender == string(subject) {
		if ref, ok := policy.AsRefusal(c.g.cfg.Policy.CheckUser(subject)); ok && ref.Definite() {
			revs = append(revs, revocation{subject, ref.Code, ref.Error()})
		}
	}
	users := make([]string, 0, len(set))
	for u := range set {
		users = append(users, string(u))
	}
	slices.Sort(users)
	return users, revs, nil
}

// eventFrame builds the event frame: the Client-Server form of the event,
// and for an invite of a bound user the room's stripped state.
func (c *conn) eventFrame(m *bus.FeedMsg, users []string) ([]byte, error) {
	ev := m.Event
	se := store.Event{
		Pos: ev.Pos, EventID: ev.EventID, RoomID: ev.RoomID, Type: ev.Type, StateKey: ev.StateKey,
		Sender: ev.Sender, Membership: ev.Membership, JSON: ev.Data,
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if len(ev.Data) == 0 || time.Since(m.Stored) > freshFor {
		stored, err := c.g.cfg.Store.EventByID(ctx, ev.EventID)
		switch {
		case err == nil:
			se = *stored
		case len(ev.Data) == 0:
			return nil, err
		}
	}
	ce, err := rooms.ToClientEvent(se, true)
	if err != nil {
		return nil, err
	}
	f := eventFrame{Type: "event", Cursor: strconv.FormatUint(m.Seq, 10), RoomID: ev.RoomID, Users: users, Event: ce}
	if ev.Type == "m.room.member" && ev.Membership == "invite" && ev.StateKey != nil && c.isBound(id.UserID(*ev.StateKey)) {
		state, err := c.g.cfg.Store.CurrentState(ctx, ev.RoomID)
		if err == nil {
			f.InviteState, _ = rooms.InviteState(state, *ev.StateKey)
		}
	}
	return encode(f), nil
}
