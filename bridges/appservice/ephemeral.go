package appservice

import (
	"context"
	"encoding/json"
	"time"
)

// Ephemeral events (m.typing, m.receipt) for appservices that registered
// receive_ephemeral (or de.sorunome.msc2409.push_ephemeral).
//
// Delivery is best-effort, unlike room events: nothing is stored before
// it is put in a transaction. Every instance learns of typing changes and
// receipt writes (from NATS, through the sync notifier's hooks); the one
// holding an appservice's push lease turns those in rooms the appservice
// is interested in into events, holds at most maxEphPending of them in
// memory, and adds them to its next transaction (one with no room events
// if there are none). A signal that finds the queue full, events held when
// the instance stops or loses the lease, or a typing change while nobody
// holds the lease are dropped.
const (
	// ephSignals bounds the signals waiting for an appservice's ephemeral
	// goroutine; more are dropped.
	ephSignals = 256
	// maxEphPending bounds the ephemeral events waiting for a transaction.
	maxEphPending = 100
	// ephInRoomTTL is how long the ephemeral goroutine trusts its cache
	// of the rooms the appservice is in.
	ephInRoomTTL = 2 * time.Second
)

// ephSignal is a change in a room: its typing users, or its receipts.
type ephSignal struct {
	room   string
	typing bool
	users  []string // the room's typing users, when typing
}

// TypingChanged tells the pushers of this instance that a room's typing
// users are now users. It never blocks.
func (s *Service) TypingChanged(room string, users []string) {
	s.signal(ephSignal{room: room, typing: true, users: users})
}

// RoomChanged tells the pushers of this instance that a room's receipts
// may have changed. It never blocks.
func (s *Service) RoomChanged(room string) { s.signal(ephSignal{room: room}) }

func (s *Service) signal(sig ephSignal) {
	s.ephMu.Lock()
	defer s.ephMu.Unlock()
	for _, p := range s.eph {
		select {
		case p.ephIn <- sig:
		default:
			p.ephDropped.Add(1)
		}
	}
}

// startEphemeral registers p for signals while ctx lasts; the returned
// channel is closed when its goroutine has stopped.
func (s *Service) startEphemeral(ctx context.Context, p *pusher) <-chan struct{} {
	done := make(chan struct{})
	p.ephIn = make(chan ephSignal, ephSignals)
	s.ephMu.Lock()
	s.eph[p.e.ID] = p
	s.ephMu.Unlock()
	go func() {
		defer close(done)
		defer func() {
			s.ephMu.Lock()
			if s.eph[p.e.ID] == p {
				delete(s.eph, p.e.ID)
			}
			s.ephMu.Unlock()
		}()
		p.ephemeral(ctx)
	}()
	return done
}

type inRoomAt struct {
	in bool
	at time.Time
}

// ephemeral turns signals into events for the next transaction.
func (p *pusher) ephemeral(ctx context.Context) {
	st := p.s.cfg.Store
	// Receipts are read per room from the position last read for it, or
	// from where this instance started leading.
	var base int64
	if err := retry(ctx, p.log, "read stream position", func() (err error) {
		base, err = st.MaxPos(ctx)
		return err
	}); err != nil {
		return
	}
	rcptFrom := map[string]int64{}
	inRoom := map[string]inRoomAt{}
	interested := func(room string) (bool, error) {
		if p.e.MatchesRoom(room) {
			return true, nil
		}
		if c, ok := inRoom[room]; ok && time.Since(c.at) < ephInRoomTTL {
			return c.in, nil
		}
		in, err := st.AppserviceInRoom(ctx, p.e.ID, room)
		if err != nil {
			return false, err
		}
		if len(inRoom) >= maxRoomCache {
			clear(inRoom)
		}
		inRoom[room] = inRoomAt{in: in, at: time.Now()}
		return in, nil
	}
	for {
		var sig ephSignal
		select {
		case <-ctx.Done():
			return
		case sig = <-p.ephIn:
		}
		ok, err := interested(sig.room)
		if err != nil {
			p.ephDropped.Add(1)
			if ctx.Err() == nil {
				p.log.Warn("appservice ephemeral: room interest", "room", sig.room, "err", err)
			}
			continue
		}
		if !ok {
			continue
		}
		if sig.typing {
			p.addEphemeral(sig.room, true, map[string]any{
				"type": "m.typing", "room_id": sig.room, "content": map[string]any{"user_ids": sig.users},
			})
			continue
		}
		now, err := st.MaxPos(ctx)
		if err != nil {
			p.ephDropped.Add(1)
			continue
		}
		from, seen := rcptFrom[sig.room]
		if !seen {
			from = base
		}
		if from >= now {
			continue
		}
		rcpts, err := st.ReceiptsSince(ctx, []string{sig.room}, from, now)
		if err != nil {
			p.ephDropped.Add(1)
			if ctx.Err() == nil {
				p.log.Warn("appservice ephemeral: read receipts", "room", sig.room, "err", err)
			}
			continue
		}
		if len(rcptFrom) >= maxRoomCache {
			clear(rcptFrom)
			base = now
		}
		rcptFrom[sig.room] = now
		// content: {event_id: {receipt_type: {user_id: {ts}}}}, as /sync.
		content := map[string]map[string]map[string]any{}
		for _, rc := range rcpts {
			// A private receipt is only its author's business.
			if rc.Type == "m.read.private" && !p.e.IsUser(rc.UserID) {
				continue
			}
			if content[rc.EventID] == nil {
				content[rc.EventID] = map[string]map[string]any{}
			}
			if content[rc.EventID][rc.Type] == nil {
				content[rc.EventID][rc.Type] = map[string]any{}
			}
			content[rc.EventID][rc.Type][rc.UserID] = map[string]any{"ts": rc.TS}
		}
		if len(content) > 0 {
			p.addEphemeral(sig.room, false, map[string]any{"type": "m.receipt", "room_id": sig.room, "content": content})
		}
	}
}

type ephEvent struct {
	room   string
	typing bool
	raw    json.RawMessage
}

// addEphemeral holds an event for the next transaction. A room's newer
// typing list replaces one still waiting; past maxEphPending the event is
// dropped.
func (p *pusher) addEphemeral(room string, typing bool, ev map[string]any) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return
	}
	p.ephMu.Lock()
	defer p.ephMu.Unlock()
	added := false
	if typing {
		for i := range p.ephPending {
			if p.ephPending[i].typing && p.ephPending[i].room == room {
				p.ephPending[i].raw = raw
				added = true
				break
			}
		}
	}
	if !added {
		if len(p.ephPending) >= maxEphPending {
			p.ephDropped.Add(1)
			return
		}
		p.ephPending = append(p.ephPending, ephEvent{room: room, typing: typing, raw: raw})
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pusher) hasEphemeral() bool {
	p.ephMu.Lock()
	defer p.ephMu.Unlock()
	return len(p.ephPending) > 0
}

// takeEphemeral returns the ephemeral events waiting for a transaction,
// and logs how many were dropped since the last time.
func (p *pusher) takeEphemeral() []json.RawMessage {
	if n := p.ephDropped.Swap(0); n > 0 {
		p.log.Warn("appservice ephemeral events dropped (best-effort delivery)", "count", n)
	}
	p.ephMu.Lock()
	defer p.ephMu.Unlock()
	if len(p.ephPending) == 0 {
		return nil
	}
	out := make([]json.RawMessage, len(p.ephPending))
	for i, e := range p.ephPending {
		out[i] = e.raw
	}
	p.ephPending = p.ephPending[:0]
	return out
}
