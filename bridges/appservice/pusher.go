package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// Delivery, one appservice at a time:
//
//  1. One hub instance holds the appservice's lease (renewed every few
//     seconds, released at shutdown, taken over when it lapses). Only it
//     consumes and pushes, so the appservice sees one ordered stream even
//     when several instances share the database.
//  2. A durable JetStream consumer (bus.Consume) reads every accepted
//     event. The interesting ones are added to the appservice's queue in
//     the database before the message is acknowledged: a crash loses
//     nothing, and the consumer resumes after the last acknowledged one.
//  3. The pusher takes up to maxTxnEvents queued events, stores them as a
//     transaction under the next never-reused ID, and PUTs it to
//     /_matrix/app/v1/transactions/{txnId}, retrying with backoff, with
//     the same ID and body, until the appservice answers 2xx. Only then
//     does it build the next one: transactions are delivered in order.
//
// The guarantee is at least once, in the order of the event stream: a
// crash between a PUT and its recording may send that transaction again
// (same ID, which the spec has appservices ignore), and an event the
// stream redelivers is recognised in the queue for queueRetention.
const (
	leaseTTL       = 15 * time.Second
	leaseRetry     = 5 * time.Second
	maxTxnEvents   = 100
	idlePoll       = time.Second
	pushBackoffMin = time.Second
	pushBackoffMax = 5 * time.Minute
	queueRetention = 10 * time.Minute
	pruneEvery     = time.Minute
	// maxRoomCache bounds the rooms the pusher remembers as relevant.
	maxRoomCache = 50_000
)

type runner struct {
	cancel  context.CancelFunc
	done    chan struct{}
	created time.Time
}

// syncRunners starts a leader loop for each registration with a URL and
// stops those of removed (or re-registered) ones.
func (s *Service) syncRunners() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.runCtx == nil || s.runCtx.Err() != nil {
		return
	}
	snap := s.snap.Load()
	for id, r := range s.runners {
		if e := snap.byID[id]; e == nil || e.URL == "" || !e.row.CreatedAt.Equal(r.created) {
			r.cancel()
			<-r.done
			delete(s.runners, id)
		}
	}
	for id, e := range snap.byID {
		if e.URL == "" || s.runners[id] != nil {
			continue // no URL: the appservice asked for no traffic
		}
		ctx, cancel := context.WithCancel(s.runCtx)
		r := &runner{cancel: cancel, done: make(chan struct{}), created: e.row.CreatedAt}
		s.runners[id] = r
		go func() {
			defer close(r.done)
			s.lead(ctx, e)
		}()
	}
}

// lead takes the appservice's lease whenever it is free and serves while
// holding it.
func (s *Service) lead(ctx context.Context, e *entry) {
	log := s.cfg.Log.With("appservice", e.ID)
	for {
		held, err := s.cfg.Store.ClaimAppserviceLease(ctx, e.ID, s.owner, time.Now(), leaseTTL)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return // removed; the next reload stops this loop for good
		case err != nil && ctx.Err() == nil:
			log.Warn("appservice lease", "err", err)
		case held:
			s.serve(ctx, e, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(leaseRetry):
		}
	}
}

// serve consumes and pushes until ctx ends or the lease is lost, then
// releases the lease.
func (s *Service) serve(ctx context.Context, e *entry, log *slog.Logger) {
	log.Info("pushing to appservice", "url", e.URL)
	lctx, cancel := context.WithCancel(ctx)
	p := &pusher{s: s, e: e, log: log, wake: make(chan struct{}, 1), inRoom: map[string]bool{}, aliases: map[string][]string{}}
	done := make(chan struct{}, 3)
	waits := 2
	if e.ReceiveEphemeral {
		waits++
		ephDone := s.startEphemeral(lctx, p)
		go func() {
			<-ephDone
			done <- struct{}{}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		if err := s.cfg.Bus.Consume(lctx, bus.AppserviceConsumerName(e.ID), "", p.handle); err != nil && lctx.Err() == nil {
			log.Error("appservice consumer stopped", "err", err)
			cancel()
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		p.push(lctx)
	}()
	t := time.NewTicker(leaseTTL / 3)
	lastOK := time.Now()
renew:
	for {
		select {
		case <-lctx.Done():
			break renew
		case <-t.C:
			held, err := s.cfg.Store.ClaimAppserviceLease(lctx, e.ID, s.owner, time.Now(), leaseTTL)
			if err == nil && held {
				lastOK = time.Now()
				continue
			}
			// A passing database error is survived while the lease surely
			// still holds; a lost lease means another instance pushes now.
			if err == nil || time.Since(lastOK) > leaseTTL*2/3 {
				log.Warn("appservice lease lost", "err", err)
				break renew
			}
		}
	}
	t.Stop()
	cancel()
	for range waits {
		<-done
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if err := s.cfg.Store.ReleaseAppserviceLease(rctx, e.ID, s.owner); err != nil {
		log.Warn("appservice lease release", "err", err)
	}
}

// pusher is one appservice's delivery while this instance leads it.
// handle runs on the consumer's goroutine, push on its own; they share
// only the store and the wake channel.
type pusher struct {
	s    *Service
	e    *entry
	log  *slog.Logger
	wake chan struct{}
	// inRoom caches AppserviceInRoom: the consumer is the only writer of
	// the appservice's memberships while it leads, so it stays exact.
	inRoom map[string]bool
	// aliases caches each room's canonical aliases (alias namespaces).
	aliases map[string][]string

	// Ephemeral events (ephemeral.go), when the appservice asked for
	// them: signals in, events held for the next transaction.
	ephIn      chan ephSignal
	ephMu      sync.Mutex
	ephPending []ephEvent
	ephDropped atomic.Int64
}

// handle queues an event if the appservice is interested. It returns an
// error only when shutting down: a store failure is retried here rather
// than handed back to the stream, whose redelivery could reorder events.
func (p *pusher) handle(ctx context.Context, m bus.EventMsg) error {
	if m.Pos <= p.e.row.StartPos {
		return nil // before the registration
	}
	return retry(ctx, p.log, "queue event "+m.EventID, func() error {
		member, ok, err := p.interested(ctx, m)
		if err != nil || !ok {
			return err
		}
		_, err = p.s.cfg.Store.EnqueueAppserviceEvent(ctx, p.e.ID, m.EventID, member, time.Now())
		if errors.Is(err, store.ErrNotFound) {
			return nil // removed meanwhile; the next reload stops this pusher
		}
		if err != nil {
			return err
		}
		if member != nil {
			// Recomputed from the store next time: another of the
			// appservice's users may still be in the room.
			delete(p.inRoom, member.RoomID)
		}
		select {
		case p.wake <- struct{}{}:
		default:
		}
		return nil
	})
}

// interested decides whether the appservice gets an event, as the spec
// lists: its users send it or are its target (invites, joins), its room
// or alias namespaces match the room, or one of its users is joined to or
// invited in the room. A member event of one of its users also updates
// which rooms those are.
func (p *pusher) interested(ctx context.Context, m bus.EventMsg) (*store.AppserviceMember, bool, error) {
	if m.Type == "m.room.member" && m.StateKey != nil && p.e.IsUser(*m.StateKey) {
		membership := m.Membership
		if membership == "" {
			membership = gjson.GetBytes(m.Data, "content.membership").Str
		}
		return &store.AppserviceMember{RoomID: m.RoomID, UserID: *m.StateKey, Membership: membership, Pos: m.Pos}, true, nil
	}
	if p.e.IsUser(m.Sender) || p.e.MatchesRoom(m.RoomID) {
		return nil, true, nil
	}
	if p.e.HasAliasNamespaces() {
		if m.Type == "m.room.canonical_alias" {
			delete(p.aliases, m.RoomID)
		}
		aliases, err := p.roomAliases(ctx, m.RoomID)
		if err != nil {
			return nil, false, err
		}
		for _, a := range aliases {
			if p.e.MatchesAlias(a) {
				return nil, true, nil
			}
		}
	}
	in, ok := p.inRoom[m.RoomID]
	if !ok {
		var err error
		if in, err = p.s.cfg.Store.AppserviceInRoom(ctx, p.e.ID, m.RoomID); err != nil {
			return nil, false, err
		}
		if len(p.inRoom) >= maxRoomCache {
			clear(p.inRoom)
		}
		p.inRoom[m.RoomID] = in
	}
	return nil, in, nil
}

// roomAliases are the room's canonical alias and alternatives: the aliases
// a room advertises (a directory alias nobody put in the room's state is
// not looked at).
func (p *pusher) roomAliases(ctx context.Context, roomID string) ([]string, error) {
	if a, ok := p.aliases[roomID]; ok {
		return a, nil
	}
	var out []string
	ev, err := p.s.cfg.Store.CurrentStateEvent(ctx, roomID, "m.room.canonical_alias", "")
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		c := gjson.GetBytes(ev.JSON, "content")
		if a := c.Get("alias").Str; a != "" {
			out = append(out, a)
		}
		for _, a := range c.Get("alt_aliases").Array() {
			out = append(out, a.Str)
		}
	}
	if len(p.aliases) >= maxRoomCache {
		clear(p.aliases)
	}
	p.aliases[roomID] = out
	return out, nil
}

// txnBody is PUT /_matrix/app/v1/transactions/{txnId}'s body. Ephemeral
// events go under their stable name (spec v1.13) and the MSC2409 one,
// which older appservices read.
type txnBody struct {
	Events           []rooms.ClientEvent `json:"events"`
	Ephemeral        []json.RawMessage   `json:"ephemeral,omitempty"`
	MSC2409Ephemeral []json.RawMessage   `json:"de.sorunome.msc2409.ephemeral,omitempty"`
}

// push sends the pending transaction, if any, then builds the next one
// from the queue, for as long as ctx lasts.
func (p *pusher) push(ctx context.Context) {
	st := p.s.cfg.Store
	lastPrune := time.Time{}
	for ctx.Err() == nil {
		txn, err := st.PendingAppserviceTxn(ctx, p.e.ID)
		if err == nil {
			p.send(ctx, txn)
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			p.pause(ctx, "read pending transaction", err)
			continue
		}
		ids, err := st.WaitingAppserviceEvents(ctx, p.e.ID, maxTxnEvents)
		if err != nil {
			p.pause(ctx, "read queue", err)
			continue
		}
		if len(ids) == 0 && !p.hasEphemeral() {
			if time.Since(lastPrune) > pruneEvery {
				if _, err := st.PruneAppserviceQueue(ctx, p.e.ID, time.Now().Add(-queueRetention)); err != nil && ctx.Err() == nil {
					p.log.Warn("prune appservice queue", "err", err)
				}
				lastPrune = time.Now()
			}
			select {
			case <-ctx.Done():
			case <-p.wake:
			case <-time.After(idlePoll):
			}
			continue
		}
		next, err := p.build(ctx, ids)
		if err != nil {
			p.pause(ctx, "build transaction", err)
			continue
		}
		next.Ephemeral = p.takeEphemeral()
		next.MSC2409Ephemeral = next.Ephemeral
		if len(next.Events) == 0 && len(next.Ephemeral) == 0 {
			continue
		}
		body, err := json.Marshal(next)
		if err != nil {
			p.pause(ctx, "encode transaction", err)
			continue
		}
		if _, err := st.CreateAppserviceTxn(ctx, p.e.ID, ids, body, time.Now()); err != nil {
			p.pause(ctx, "store transaction", err)
		}
	}
}

// build makes a transaction body from queued event IDs, in queue order.
func (p *pusher) build(ctx context.Context, ids []string) (txnBody, error) {
	if len(ids) == 0 {
		return txnBody{Events: []rooms.ClientEvent{}}, nil
	}
	evs, err := p.s.cfg.Store.EventsByID(ctx, ids)
	if err != nil {
		return txnBody{}, err
	}
	byID := make(map[string]store.Event, len(evs))
	for _, e := range evs {
		byID[e.EventID] = e
	}
	body := txnBody{Events: make([]rooms.ClientEvent, 0, len(ids))}
	for _, id := range ids {
		e, ok := byID[id]
		if !ok {
			continue // cannot happen: events are never deleted
		}
		ce, err := rooms.ToClientEvent(e, true)
		if err != nil {
			return txnBody{}, err
		}
		body.Events = append(body.Events, ce)
	}
	return body, nil
}

// send delivers one transaction, retrying until the appservice accepts it
// or ctx ends (another instance, or this one after a restart, then
// resends it with the same ID and body).
func (p *pusher) send(ctx context.Context, txn *store.AppserviceTxn) {
	txnID := p.txnID(txn.ID)
	path := "/_matrix/app/v1/transactions/" + url.PathEscape(txnID)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		status, _, err := p.s.call(ctx, p.e, http.MethodPut, path, txn.Body)
		if err == nil && status >= 200 && status <= 299 {
			_ = retry(ctx, p.log, "complete transaction "+txnID, func() error {
				return p.s.cfg.Store.CompleteAppserviceTxn(ctx, p.e.ID, txn.ID)
			})
			return
		}
		// Neither the appservice's answer nor the error text is logged:
		// either may quote the transaction's events.
		failure := slog.Int("status", status)
		if err != nil {
			failure = errclass.Attr(err)
		}
		delay := min(pushBackoffMin<<min(attempt, 20), pushBackoffMax)
		if ctx.Err() == nil {
			p.log.Warn("appservice transaction failed, retrying", "txn_id", txnID, "attempt", attempt+1, "retry_in", delay, failure)
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// txnID is the wire form of a transaction number. The registration time
// in front keeps IDs unique when an appservice is removed and added again
// (its counter restarts), because appservices skip an ID seen before.
func (p *pusher) txnID(n int64) string {
	return fmt.Sprintf("%d.%d", p.e.row.CreatedAt.UnixMilli(), n)
}

func (p *pusher) pause(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	p.log.Warn("appservice pusher: "+what, errclass.Attr(err))
	select {
	case <-ctx.Done():
	case <-time.After(idlePoll):
	}
}

// retry runs fn until it succeeds or ctx ends, backing off up to 10 s.
func retry(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	delay := 250 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("appservice: "+what+" failed, retrying", errclass.Attr(err), "retry_in", delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}
