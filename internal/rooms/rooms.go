// Package rooms is the room server: it builds, signs and authorises every
// local event and commits it, with its outbox row, in one transaction.
//
// All writes go through one writer goroutine per hub instance, which
// gathers whatever requests are waiting into one database transaction
// (group commit). With several instances the store's global stream lock
// serialises their batches, so positions stay gap-free in commit order and
// each room's graph stays linear: no forks, no lost events. The writer keeps
// each room's current state in memory and revalidates it against the
// room's head row at the start of every batch, so another instance's
// writes are picked up instead of being overwritten.
package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
)

// MaxEventBytes is the Matrix limit on a PDU's size.
const MaxEventBytes = 65536

// Errors callers map to Matrix error codes.
var (
	// ErrForbidden wraps an auth-rule failure; the message says why.
	ErrForbidden = errors.New("forbidden")
	// ErrTooLarge is an event over MaxEventBytes.
	ErrTooLarge = errors.New("event too large")
	// ErrUnknownRoom is a room this hub does not know.
	ErrUnknownRoom = errors.New("unknown room")
	// ErrUnknownEvent is a reference to an event the room does not have.
	ErrUnknownEvent = errors.New("unknown event")
	// ErrBadEvent is a malformed event request (e.g. bad state key).
	ErrBadEvent = errors.New("bad event")
	// ErrUnsupportedRoomVersion is a room version the hub cannot create.
	ErrUnsupportedRoomVersion = errors.New("unsupported room version")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("room server closed")
)

// Publisher hands accepted events to the outbox relay as soon as they are
// committed. The outbox row already guarantees delivery; this is the fast
// path that keeps delivery latency low.
type Publisher interface {
	Accepted(events []store.Event)
}

// AcceptedHook is called for every accepted event (metrics).
type AcceptedHook func(evType string)

// Config for the room server.
type Config struct {
	ServerName     string
	Key            signingkey.Key
	DefaultVersion id.RoomVersion
	// BatchMax bounds how many requests share one transaction.
	BatchMax int
	// CacheRooms bounds how many rooms' state the writer keeps in memory.
	CacheRooms int
	OnAccepted AcceptedHook
	// Gate, when set, admits or refuses every event (the trust space).
	Gate Gate
	// RemoteKeys looks up other servers' signing keys for Receive; nil
	// refuses every remote event.
	RemoteKeys KeyFunc
}

// SupportedVersions are the room versions this hub creates and serves.
var SupportedVersions = []id.RoomVersion{id.RoomV10, id.RoomV11, id.RoomV12}

// IsSupported reports whether v is a room version the hub handles.
func IsSupported(v id.RoomVersion) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// Store is what the room server needs: its one write path (every read
// that decides a write happens inside it, under the stream lock) and a
// room's head outside it.
type Store interface {
	WriteEvents(ctx context.Context, fn func(tx store.EventTx) error) error
	GetRoom(ctx context.Context, roomID string) (*store.Room, error)
}

// Server is the room server.
type Server struct {
	st   Store
	cfg  Config
	pub  Publisher
	log  *slog.Logger
	reqs chan *op
	done chan struct{}
	stop context.CancelFunc

	// cache is only touched by the writer goroutine.
	cache map[string]*roomState
}

type op struct {
	ctx   context.Context
	apply func(b *batch) (*Result, error)
	res   chan opResult
	// room and txn, when set, are looked up for the whole batch at once.
	room string
	txn  *store.TxnKey
}

type opResult struct {
	r   *Result
	err error
}

// Result of a write: the events it created (possibly none, for an
// idempotent retry) and the event ID answering the request.
type Result struct {
	EventID id.EventID
	RoomID  id.RoomID
	Events  []store.Event
}

// New starts the room server's writer.
func New(st Store, cfg Config, pub Publisher, log *slog.Logger) *Server {
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 256
	}
	if cfg.CacheRooms <= 0 {
		cfg.CacheRooms = 20000
	}
	if cfg.DefaultVersion == "" {
		cfg.DefaultVersion = id.RoomV11
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		st: st, cfg: cfg, pub: pub, log: log,
		reqs:  make(chan *op, 4096),
		done:  make(chan struct{}),
		stop:  cancel,
		cache: map[string]*roomState{},
	}
	go s.writer(ctx)
	return s
}

// Close stops the writer after the batch in flight.
func (s *Server) Close() {
	s.stop()
	<-s.done
}

// ServerName is the local server name.
func (s *Server) ServerName() string { return s.cfg.ServerName }

// DefaultVersion is the room version used when createRoom names none.
func (s *Server) DefaultVersion() id.RoomVersion { return s.cfg.DefaultVersion }

func (s *Server) submit(ctx context.Context, apply func(b *batch) (*Result, error)) (*Result, error) {
	return s.submitOp(&op{ctx: ctx, apply: apply, res: make(chan opResult, 1)})
}

func (s *Server) submitOp(o *op) (*Result, error) {
	ctx := o.ctx
	select {
	case s.reqs <- o:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, ErrClosed
	}
	select {
	case r := <-o.res:
		return r.r, r.err
	case <-s.done:
		// The batch may still have committed; the caller's retry with the
		// same transaction ID finds out.
		return nil, ErrClosed
	}
}

func (s *Server) writer(ctx context.Context) {
	defer close(s.done)
	pending := make([]*op, 0, s.cfg.BatchMax)
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-s.reqs:
			pending = append(pending[:0], o)
		}
	gather:
		for len(pending) < s.cfg.BatchMax {
			select {
			case o := <-s.reqs:
				pending = append(pending, o)
			default:
				break gather
			}
		}
		s.runBatch(pending)
	}
}

// batch is one transaction's worth of requests.
type batch struct {
	s       *Server
	ctx     context.Context
	tx      store.EventTx
	touched map[string]*roomState
	created []store.Event
	// heads and txns are prefetched for the batch's ops.
	heads map[string]*store.Room
	txns  map[store.TxnKey]string
}

// prefetch reads, in two queries, the room heads and transaction IDs the
// batch's sends need, instead of two queries per send.
func (b *batch) prefetch(ops []*op) error {
	var rooms []string
	var keys []store.TxnKey
	seen := map[string]bool{}
	for _, o := range ops {
		if o.room != "" && !seen[o.room] {
			seen[o.room] = true
			rooms = append(rooms, o.room)
		}
		if o.txn != nil {
			keys = append(keys, *o.txn)
		}
	}
	var err error
	if b.txns, err = b.tx.TxnEvents(b.ctx, keys); err != nil {
		return err
	}
	b.heads, err = b.tx.GetRooms(b.ctx, rooms)
	return err
}

// runBatch commits ops in one transaction (group commit). A request that
// fails on its own (refused, malformed, unsignable) fails alone inside it:
// that is an opError. Any other error aborts the transaction, and it may
// still be one request's doing (a value the store refuses, a bug that
// panics), so the writer then runs each request again in a transaction of
// its own: only the culprit fails. The happy path pays nothing for this.
func (s *Server) runBatch(ops []*op) {
	results, err := s.commit(ops)
	switch {
	case err == nil:
	case len(ops) > 1 && !errors.Is(err, context.DeadlineExceeded):
		// (A deadline means the store is stuck, not that a request is
		// bad: running them one by one would only take longer to fail.)
		s.log.Warn("event batch failed; retrying its requests one at a time", errclass.Attr(err), "requests", len(ops))
		var stuck error
		for i := range ops {
			if stuck != nil {
				results[i] = opResult{err: fmt.Errorf("store: %w", stuck)}
				continue
			}
			one, err := s.commit(ops[i : i+1])
			results[i] = one[0]
			if err != nil {
				s.log.Error("event request failed", errclass.Attr(err))
				if errors.Is(err, context.DeadlineExceeded) {
					stuck = err
				}
			}
		}
	default:
		s.log.Error("event batch failed", errclass.Attr(err), "requests", len(ops))
	}
	for i, o := range ops {
		o.res <- results[i]
	}
	if len(s.cache) > s.cfg.CacheRooms {
		for k := range s.cache {
			delete(s.cache, k)
			if len(s.cache) <= s.cfg.CacheRooms*9/10 {
				break
			}
		}
	}
}

// commit runs ops in one transaction and hands what it created to the
// publisher. When the transaction fails, nothing of it committed: the
// writer forgets what it learnt inside it, and every op that had not
// failed on its own gets the error.
func (s *Server) commit(ops []*op) ([]opResult, error) {
	results := make([]opResult, len(ops))
	var all []store.Event
	// The batch context is not any one request's: a client that gives up
	// must not roll back the others' events.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &batch{s: s, ctx: ctx, touched: map[string]*roomState{}}
	err := s.st.WriteEvents(ctx, func(tx store.EventTx) error {
		b.tx = tx
		all = all[:0]
		if err := b.prefetch(ops); err != nil {
			return err
		}
		for i, o := range ops {
			if o.ctx.Err() != nil {
				results[i] = opResult{err: o.ctx.Err()}
				continue
			}
			b.created = b.created[:0]
			r, err := b.apply(o)
			if err != nil {
				if isOpError(err) {
					results[i] = opResult{err: err}
					continue
				}
				return err
			}
			if r != nil {
				r.Events = append([]store.Event(nil), b.created...)
			}
			all = append(all, b.created...)
			results[i] = opResult{r: r}
		}
		return nil
	})
	if err != nil {
		for roomID := range b.touched {
			delete(s.cache, roomID)
		}
		for i := range results {
			if results[i].err == nil {
				results[i] = opResult{err: fmt.Errorf("store: %w", err)}
			}
		}
		return results, err
	}
	if len(all) > 0 {
		if s.pub != nil {
			s.pub.Accepted(all)
		}
		if s.cfg.OnAccepted != nil {
			for _, e := range all {
				s.cfg.OnAccepted(e.Type)
			}
		}
	}
	return results, nil
}

// errPanicked is a request whose handling panicked: a bug, which must
// cost that request only, never the writer goroutine or its batch.
var errPanicked = errors.New("rooms: request handling panicked")

// apply runs one op. A panic aborts the transaction like a store error
// (the op may have written part of its work), so the batch is retried
// one op at a time and only the panicking request fails.
func (b *batch) apply(o *op) (r *Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			// The panic value is not logged: it may quote the request.
			b.s.log.Error("event request panicked", "panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
			r, err = nil, errPanicked
		}
	}()
	return o.apply(b)
}

// opError marks errors that fail one request without aborting the batch.
// Only errors raised before the request wrote anything may be opErrors:
// the transaction commits without that request, so a partial write would
// commit. Errors after a write abort the transaction instead.
type opError struct{ err error }

func (e opError) Error() string { return e.err.Error() }
func (e opError) Unwrap() error { return e.err }

func isOpError(err error) bool {
	var oe opError
	return errors.As(err, &oe)
}

func fail(kind error, format string, args ...any) error {
	return opError{fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))}
}

// room returns the room's state as of this transaction, loading or
// revalidating the cache once per batch.
func (b *batch) room(roomID string) (*roomState, error) {
	if rs, ok := b.touched[roomID]; ok {
		return rs, nil
	}
	head, ok := b.heads[roomID]
	if !ok {
		var err error
		head, err = b.tx.GetRoom(b.ctx, roomID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fail(ErrUnknownRoom, "room %s is not known to this server", roomID)
		} else if err != nil {
			return nil, err
		}
	}
	rs := b.s.cache[roomID]
	if rs == nil || rs.head != id.EventID(head.LastEventID) || rs.group != head.StateGroup {
		evs, err := b.tx.CurrentState(b.ctx, roomID)
		if err != nil {
			return nil, err
		}
		xs, err := b.tx.Extremities(b.ctx, roomID)
		if err != nil {
			return nil, err
		}
		if head.StateGroup == 0 && head.LastEventID != "" {
			// A room from before state groups: its current state becomes
			// its first group, a snapshot.
			h := *head
			if h.StateGroup, err = b.snapshotCurrentState(roomID, evs); err != nil {
				return nil, err
			}
			head = &h
		}
		rs, err = loadRoomState(head, xs, evs)
		if err != nil {
			return nil, fmt.Errorf("load state of %s: %w", roomID, err)
		}
		b.s.cache[roomID] = rs
	}
	b.touched[roomID] = rs
	return rs, nil
}

// snapshotCurrentState stores a room's materialised current state as a
// state group and makes it the room's current group.
func (b *batch) snapshotCurrentState(roomID string, evs []store.Event) (int64, error) {
	m := store.StateMap{}
	for _, e := range evs {
		if e.StateKey != nil {
			m[store.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e.EventID
		}
	}
	g, err := b.tx.NewStateGroup(b.ctx, roomID, 0, m)
	if err != nil {
		return 0, err
	}
	return g, b.tx.SetCurrentState(b.ctx, roomID, g, m)
}

// stateGroups returns the state groups before and after p, an event that
// extends rs's current state, storing the group after a state event as a
// one-entry delta.
func (b *batch) stateGroups(rs *roomState, p *pdu.PDU, evID id.EventID) (before, after int64, err error) {
	before = rs.group
	if p.StateKey == nil {
		return before, before, nil
	}
	after, err = b.tx.NewStateGroup(b.ctx, string(rs.roomID), before,
		store.StateMap{{Type: p.Type, StateKey: *p.StateKey}: string(evID)})
	return before, after, err
}

func eventIDs(ids []id.EventID) []string {
	out := make([]string, len(ids))
	for i, v := range ids {
		out[i] = string(v)
	}
	return out
}

// Submit is one event for an existing room.
type Submit struct {
	RoomID   id.RoomID
	Sender   id.UserID
	Type     string
	StateKey *string
	Content  json.RawMessage
	Redacts  id.EventID
	Txn      *store.TxnKey
	// Door is where the request entered (door.From(ctx) when zero); it is
	// stored with the event so the audit trail names the app that spoke
	// for the sender.
	Door door.Door
}

// Send builds, authorises and stores one event.
func (s *Server) Send(ctx context.Context, req Submit) (*Result, error) {
	if req.Door.Kind == "" {
		req.Door = door.From(ctx)
	}
	if err := checkSubmit(req); err != nil {
		return nil, err
	}
	apply := func(b *batch) (*Result, error) {
		if req.Txn != nil {
			// Checked under the stream lock, so a retry racing the original
			// (even through another instance) finds it.
			if evID, ok := b.txns[*req.Txn]; ok {
				return &Result{EventID: id.EventID(evID), RoomID: req.RoomID}, nil
			}
		}
		rs, err := b.room(string(req.RoomID))
		if err != nil {
			return nil, err
		}
		evID, err := b.appendEvent(rs, req)
		if err != nil {
			return nil, err
		}
		if req.Txn != nil {
			b.txns[*req.Txn] = string(evID) // a duplicate later in this batch
		}
		return &Result{EventID: evID, RoomID: req.RoomID}, nil
	}
	return s.submitOp(&op{ctx: ctx, apply: apply, res: make(chan opResult, 1), room: string(req.RoomID), txn: req.Txn})
}

// appendEvent builds the next event of rs, checks it and inserts it.
func (b *batch) appendEvent(rs *roomState, req Submit) (id.EventID, error) {
	var target *store.Event
	if req.Type == event.EventRedaction.Type {
		var err error
		if target, err = b.redactionTarget(rs, req); err != nil {
			return "", err
		}
	}
	p, evID, err := rs.build(b.s.cfg, req)
	if err != nil {
		return "", err
	}
	raw, err := marshalPDU(p)
	if err != nil {
		return "", opError{fmt.Errorf("%w: %w", ErrBadEvent, err)}
	}
	if len(raw) > MaxEventBytes {
		return "", fail(ErrTooLarge, "event is %d bytes, the limit is %d", len(raw), MaxEventBytes)
	}
	before, after, err := b.stateGroups(rs, p, evID)
	if err != nil {
		return "", err
	}
	ev := store.Event{
		EventID: string(evID), RoomID: string(rs.roomID), Type: p.Type, StateKey: p.StateKey,
		Sender: string(p.Sender), Depth: p.Depth, OriginTS: p.OriginServerTS, JSON: raw,
		Membership: membershipOf(p), Door: req.Door.String(), StateBefore: before, StateAfter: after,
	}
	pos, err := b.tx.InsertEvent(b.ctx, store.NewEvent{Event: ev, Txn: req.Txn, PrevEvents: eventIDs(p.PrevEvents), Local: true})
	if err != nil {
		return "", err
	}
	ev.Pos = pos
	rs.apply(p, evID)
	rs.group = after
	b.created = append(b.created, ev)
	if target != nil {
		if err := b.applyRedaction(rs, target, p, evID); err != nil {
			return "", err
		}
	}
	return evID, nil
}
