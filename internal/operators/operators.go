// Package operators is the operator allow-list: the organisations
// (messenger vendors, hospital groups) allowed to connect bridges to the
// hub or to federate with it, and the Matrix server names each one runs.
//
// The Registry writes through the store and answers checks from an
// in-memory snapshot, so a check on the bridge or federation path is a map
// look-up with no I/O. Watch keeps the snapshot in step with changes made
// by other processes (the CLI writes straight to the database while the
// hub runs; several hub instances share one PostgreSQL).
//
// Deny when unsure: a registry that has not loaded yet refuses everything.
package operators

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// Operator is an operator as stored. Values handed out by Check and
// CheckServer are shared with the registry's snapshot: read them, never
// modify them.
type Operator = store.Operator

// Status is an operator's standing.
type Status = store.OperatorStatus

// Statuses. Suspended and active go both ways; revoked is final.
const (
	Active    = store.OperatorActive
	Suspended = store.OperatorSuspended
	Revoked   = store.OperatorRevoked
)

// Errors callers branch on (errors.Is), besides *Refusal and
// *ValidationError (errors.As).
var (
	ErrNotFound = store.ErrNotFound
	ErrExists   = store.ErrExists
	ErrRevoked  = store.ErrRevoked
)

// ServerClaimedError: a server name of a new operator already belongs to
// another one. It matches ErrExists too.
type ServerClaimedError = store.ServerClaimedError

// Change is one operator entering the registry or changing status. Old is
// "" for an operator added; New is "" for one that vanished from the store
// (deleted by hand: it is refused from then on). Actor is who made the
// change (the admin user, "cli:<user>"); it is "" for changes made by
// another process and noticed by Watch.
type Change struct {
	Operator Operator
	Old, New Status
	Actor    string
	Reason   string
}

// Registry is the allow-list with its checks. It is safe for concurrent use.
//
// Locking: mu serialises every write, every reload and the OnChange hooks
// they fire, so hooks see changes one at a time and in order, and a reload
// never reports a change this process made itself (with an empty actor)
// before the write that made it has patched the snapshot. Checks take no
// lock at all: they read the snapshot through an atomic pointer. hooksMu
// only guards the hook list; it is never held while a hook runs, and mu is
// never taken while holding it.
type Registry struct {
	st  store.OperatorStore
	log *slog.Logger

	snap atomic.Pointer[snapshot]
	mu   sync.Mutex

	hooksMu sync.Mutex
	hooks   []func(Change)

	// own are the hub's own server names, which no operator may claim.
	own atomic.Pointer[[]string]
}

// snapshot is immutable once published: a change builds a new one.
type snapshot struct {
	byID     map[string]*Operator
	byServer map[string]*Operator
}

func newSnapshot(ops []Operator) *snapshot {
	s := &snapshot{byID: make(map[string]*Operator, len(ops)), byServer: make(map[string]*Operator, len(ops))}
	for i := range ops {
		s.put(&ops[i])
	}
	return s
}

func (s *snapshot) put(o *Operator) {
	if old := s.byID[o.ID]; old != nil {
		for _, sn := range old.ServerNames {
			delete(s.byServer, sn)
		}
	}
	s.byID[o.ID] = o
	for _, sn := range o.ServerNames {
		s.byServer[sn] = o
	}
}

// with returns a copy of s with o added or replaced.
func (s *snapshot) with(o *Operator) *snapshot {
	n := &snapshot{byID: maps.Clone(s.byID), byServer: maps.Clone(s.byServer)}
	n.put(o)
	return n
}

// New returns a registry over st. It refuses every check until Load
// succeeds.
func New(st store.OperatorStore, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{st: st, log: log.With("component", "operators")}
}

// SetOwnServerNames names the hub's own server names: Add refuses an
// operator claiming one of them (or the same host on another port), since
// the hub's traffic would then pass for that operator's, and the
// operator's for the hub's.
func (r *Registry) SetOwnServerNames(names ...string) {
	own := slices.Clone(names)
	r.own.Store(&own)
}

// OnChange registers fn to run after each status change or addition, in
// order, one at a time. fn runs synchronously under the registry's write
// lock: it may call Check and CheckServer but must not call Add or the
// status methods (that would deadlock), and should hand slow work (closing
// sockets) to a goroutine.
func (r *Registry) OnChange(fn func(Change)) {
	r.hooksMu.Lock()
	defer r.hooksMu.Unlock()
	r.hooks = append(r.hooks, fn)
}

// fire runs the hooks; the caller holds r.mu.
func (r *Registry) fire(changes []Change) {
	if len(changes) == 0 {
		return
	}
	r.hooksMu.Lock()
	hooks := slices.Clone(r.hooks)
	r.hooksMu.Unlock()
	for _, c := range changes {
		for _, h := range hooks {
			h(c)
		}
	}
}

// Loaded reports whether the registry has a snapshot to check against
// (for readiness: until then every check is refused).
func (r *Registry) Loaded() bool { return r.snap.Load() != nil }

// Load reads the whole allow-list from the store and makes it the
// snapshot checks use. On a reload, it fires OnChange for every operator
// whose status differs from the previous snapshot (changes made by another
// process); the first load fires nothing. On error the previous snapshot
// stays in use: the last known allow-list is a better answer than none.
func (r *Registry) Load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops, err := r.st.ListOperators(ctx)
	if err != nil {
		return fmt.Errorf("operators: load: %w", err)
	}
	next := newSnapshot(ops)
	prev := r.snap.Swap(next)
	if prev == nil {
		r.log.Debug("operator registry loaded", "operators", len(ops))
		return nil
	}
	changes := diff(prev, next)
	for _, c := range changes {
		r.log.Info("operator status changed elsewhere", "operator", c.Operator.ID,
			"old", c.Old, "new", c.New, "reason", c.Reason)
	}
	r.fire(changes)
	return nil
}

// diff lists status changes from prev to next, in ID order so that hooks
// see a deterministic sequence.
func diff(prev, next *snapshot) []Change {
	var out []Change
	for _, id := range slices.Sorted(maps.Keys(next.byID)) {
		n := next.byID[id]
		p := prev.byID[id]
		switch {
		case p == nil:
			out = append(out, Change{Operator: *clone(n), New: n.Status, Reason: n.StatusReason})
		case p.Status != n.Status:
			out = append(out, Change{Operator: *clone(n), Old: p.Status, New: n.Status, Reason: n.StatusReason})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(prev.byID)) {
		if p := prev.byID[id]; next.byID[id] == nil {
			out = append(out, Change{Operator: *clone(p), Old: p.Status})
		}
	}
	return out
}

// Watch reloads the allow-list every interval until ctx ends, so changes
// made by the CLI or another hub instance reach this one's checks and
// OnChange hooks within one interval. If the registry was never loaded it
// loads at once. Failed reloads are logged and retried at the next tick.
// A non-positive interval means 10 s.
func (r *Registry) Watch(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = 10 * time.Second
	}
	if !r.Loaded() {
		r.reload(ctx)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.reload(ctx)
		}
	}
}

func (r *Registry) reload(ctx context.Context) {
	if err := r.Load(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("operator registry reload failed; checks use the last snapshot", "err", err, "loaded", r.Loaded())
	}
}

// Check decides whether the operator id may connect: it returns the
// operator when active, else a *Refusal (unknown, suspended, revoked, or
// registry not loaded). No I/O.
func (r *Registry) Check(id string) (*Operator, error) {
	s := r.snap.Load()
	if s == nil {
		return nil, &Refusal{Code: CodeRegistryUnavailable, Subject: id}
	}
	o := s.byID[id]
	if o == nil {
		return nil, &Refusal{Code: CodeUnknownOperator, Subject: id}
	}
	return standing(o, id)
}

// CheckServer decides whether traffic from a Matrix server name may be
// accepted: it returns the server's operator when that operator is
// active, else a *Refusal (server not listed, operator suspended or
// revoked, registry not loaded). The name must match a listed one exactly.
// No I/O.
func (r *Registry) CheckServer(serverName string) (*Operator, error) {
	s := r.snap.Load()
	if s == nil {
		return nil, &Refusal{Code: CodeRegistryUnavailable, Subject: serverName}
	}
	o := s.byServer[serverName]
	if o == nil {
		return nil, &Refusal{Code: CodeUnknownServer, Subject: serverName}
	}
	return standing(o, serverName)
}

func standing(o *Operator, subject string) (*Operator, error) {
	switch o.Status {
	case Active:
		return o, nil
	case Suspended:
		return nil, &Refusal{Code: CodeOperatorSuspended, Subject: subject, Operator: o.ID}
	case Revoked:
		return nil, &Refusal{Code: CodeOperatorRevoked, Subject: subject, Operator: o.ID}
	}
	// A status this code does not know (a newer hub wrote it): refuse.
	return nil, &Refusal{Code: CodeOperatorSuspended, Subject: subject, Operator: o.ID}
}

// Add registers a new, active operator after validating it (a
// *ValidationError names the field at fault). A duplicate ID is ErrExists;
// a server name already claimed is a *ServerClaimedError.
func (r *Registry) Add(ctx context.Context, o Operator, actor string) (*Operator, error) {
	o, err := normalize(o)
	if err != nil {
		return nil, err
	}
	if own := r.own.Load(); own != nil {
		if err := notOwnServer(o.ServerNames, *own); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	got, err := r.st.AddOperator(ctx, store.Operator{
		ID: o.ID, Name: o.Name, ServerNames: o.ServerNames, Contact: o.Contact, Status: Active,
	})
	if err != nil {
		return nil, fmt.Errorf("operators: add %s: %w", o.ID, err)
	}
	r.apply(got)
	r.log.Info("operator added", "operator", got.ID, "servers", got.ServerNames, "actor", actor)
	r.fire([]Change{{Operator: *got, New: got.Status, Actor: actor}})
	return clone(got), nil
}

// Suspend stops an operator's traffic until Reactivate. reason is
// required: it is what the operator is told and what the audit keeps.
func (r *Registry) Suspend(ctx context.Context, id, reason, actor string) (*Operator, error) {
	return r.setStatus(ctx, id, Suspended, reason, true, actor)
}

// Reactivate lets a suspended operator back in. reason is optional.
// A revoked operator cannot be reactivated (ErrRevoked).
func (r *Registry) Reactivate(ctx context.Context, id, reason, actor string) (*Operator, error) {
	return r.setStatus(ctx, id, Active, reason, false, actor)
}

// Revoke bans an operator for good, its server names with it (they stay
// claimed, so they cannot come back under another operator). reason is
// required.
func (r *Registry) Revoke(ctx context.Context, id, reason, actor string) (*Operator, error) {
	return r.setStatus(ctx, id, Revoked, reason, true, actor)
}

func (r *Registry) setStatus(ctx context.Context, id string, to Status, reason string, needReason bool, actor string) (*Operator, error) {
	reason, err := validateReason(reason, needReason)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	got, prev, err := r.st.SetOperatorStatus(ctx, id, to, reason)
	if err != nil {
		return nil, fmt.Errorf("operators: set %s %s: %w", id, to, err)
	}
	// Old is the status this process acted on until now. When another
	// process changed the operator since the last reload, the snapshot
	// differs from the store's previous status; reporting the snapshot's
	// keeps hooks consistent with what this process enforced.
	old := prev
	if s := r.snap.Load(); s != nil {
		if o := s.byID[id]; o != nil {
			old = o.Status
		}
	}
	r.apply(got)
	r.log.Info("operator status changed", "operator", id, "old", old, "new", got.Status, "reason", reason, "actor", actor)
	if old != got.Status {
		r.fire([]Change{{Operator: *got, Old: old, New: got.Status, Actor: actor, Reason: reason}})
	}
	return clone(got), nil
}

// apply puts a freshly written operator into the snapshot at once, so
// this process enforces its own change without waiting for a reload. An
// unloaded registry stays unloaded: one operator is not an allow-list.
// The caller holds r.mu.
func (r *Registry) apply(o *Operator) {
	if s := r.snap.Load(); s != nil {
		r.snap.Store(s.with(clone(o)))
	}
}

// Get reads one operator from the store (not the snapshot), so the admin
// API and the CLI show the latest state even between reloads.
func (r *Registry) Get(ctx context.Context, id string) (*Operator, error) {
	o, err := r.st.GetOperator(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("operators: get %s: %w", id, err)
	}
	return o, nil
}

// List reads every operator from the store, ordered by ID.
func (r *Registry) List(ctx context.Context) ([]Operator, error) {
	ops, err := r.st.ListOperators(ctx)
	if err != nil {
		return nil, fmt.Errorf("operators: list: %w", err)
	}
	return ops, nil
}

// clone copies o with its own server list, so the snapshot and callers
// never share a slice.
func clone(o *Operator) *Operator {
	c := *o
	c.ServerNames = slices.Clone(o.ServerNames)
	return &c
}
