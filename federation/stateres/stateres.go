package stateres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// StateKey is the (type, state_key) pair that names an entry of room state.
// It is mautrix's, so auth event selections index state maps directly.
type StateKey = pdu.StateKey

// StateMap is a room state: each entry names the event that holds it.
type StateMap map[StateKey]id.EventID

// EventFetcher returns the events it knows among ids. An ID absent from the
// returned map is unknown. Events that were rejected must come back with
// InternalMeta.Rejected set. Resolve never modifies the returned events.
type EventFetcher interface {
	Events(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error)
}

// FetcherFunc adapts a function to EventFetcher.
type FetcherFunc func(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error)

// Events calls f.
func (f FetcherFunc) Events(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.PDU, error) {
	return f(ctx, ids)
}

// DefaultMaxEvents bounds the auth graph one resolution may load when
// Resolver.MaxEvents is zero. A room with a million events in the auth
// chains of its state is far beyond anything the hub serves; the bound
// exists so a corrupt or hostile graph fails instead of exhausting memory.
const DefaultMaxEvents = 1_000_000

// fetchBatch is the most IDs asked of the fetcher at once, so a store can
// answer with one bounded query.
const fetchBatch = 1000

var (
	// ErrUnsupportedRoomVersion: only room versions 10, 11 and 12 are handled.
	ErrUnsupportedRoomVersion = errors.New("stateres: unsupported room version")
	// ErrAuthCycle: auth_events form a cycle.
	ErrAuthCycle = errors.New("stateres: auth events form a cycle")
	// ErrTooManyEvents: the auth graph is larger than Resolver.MaxEvents.
	ErrTooManyEvents = errors.New("stateres: auth graph too large")
	// ErrRejectedInState: a value of an input state map is a rejected event.
	ErrRejectedInState = errors.New("stateres: rejected event in input state")
	// ErrBadStateEntry: a state map entry names an event that is not a state
	// event of that type and state key.
	ErrBadStateEntry = errors.New("stateres: state entry does not match its event")
	// ErrNotStateEvent: an auth chain holds an event without a state key.
	ErrNotStateEvent = errors.New("stateres: non-state event in auth chain")
	// ErrRoomMismatch: the events do not all belong to one room.
	ErrRoomMismatch = errors.New("stateres: events from different rooms")
	// ErrNoKeySource: an event needs a signature check and Resolver.GetKey is
	// nil.
	ErrNoKeySource = errors.New("stateres: signing key needed but no key source")
)

// MissingEventsError lists events the fetcher did not know.
type MissingEventsError struct {
	IDs []id.EventID // at most maxListedMissing of them
	N   int          // how many were missing in all
}

const maxListedMissing = 10

func (e *MissingEventsError) Error() string {
	ids := make([]string, len(e.IDs))
	for i, v := range e.IDs {
		ids[i] = string(v)
	}
	return fmt.Sprintf("stateres: %d unknown events (%s)", e.N, strings.Join(ids, ", "))
}

// Resolver holds what a resolution needs besides its input. The zero value
// is not usable: Fetcher is required.
type Resolver struct {
	Fetcher EventFetcher
	// GetKey verifies join_authorised_via_users_server signatures during the
	// iterative auth checks. Optional; see the package documentation.
	GetKey pdu.GetKeyFunc
	// MaxEvents bounds the number of events loaded; 0 means DefaultMaxEvents.
	MaxEvents int
}

// Resolve resolves sets with a Resolver that has only a fetcher.
func Resolve(ctx context.Context, version id.RoomVersion, sets []StateMap, fetch EventFetcher) (StateMap, error) {
	r := Resolver{Fetcher: fetch}
	return r.Resolve(ctx, version, sets)
}

// Resolve computes the resolution of the state sets for a room of the given
// version. The input maps are not modified; the result is a new map.
func (r *Resolver) Resolve(ctx context.Context, version id.RoomVersion, sets []StateMap) (StateMap, error) {
	run, err := r.start(ctx, version)
	if err != nil {
		return nil, err
	}
	unconflicted, conflicted := partition(sets)
	if len(conflicted) == 0 {
		// Every set is the same state (or there is at most one set): it
		// resolves to itself without touching the store.
		return unconflicted, nil
	}
	return run.resolve(sets, unconflicted, conflicted)
}

// start checks the version and the configuration and prepares one run.
func (r *Resolver) start(ctx context.Context, version id.RoomVersion) (*resolution, error) {
	v21 := false
	switch version {
	case id.RoomV10, id.RoomV11:
	case id.RoomV12:
		v21 = true
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedRoomVersion, version)
	}
	if r.Fetcher == nil {
		return nil, errors.New("stateres: no event fetcher")
	}
	maxEvents := r.MaxEvents
	if maxEvents <= 0 {
		maxEvents = DefaultMaxEvents
	}
	return &resolution{
		ctx:     ctx,
		version: version,
		v21:     v21,
		fetcher: r.Fetcher,
		getKey:  r.GetKey,
		max:     maxEvents,
		g:       newGraph(),
		create:  -1,
	}, nil
}

// partition splits the sets into the unconflicted state map and the
// conflicted keys: a key is unconflicted only if every set has it with the
// same event.
func partition(sets []StateMap) (StateMap, map[StateKey][]id.EventID) {
	unconflicted := StateMap{}
	if len(sets) == 0 {
		return unconflicted, nil
	}
	var conflicted map[StateKey][]id.EventID
	addConflict := func(k StateKey) {
		if conflicted == nil {
			conflicted = map[StateKey][]id.EventID{}
		}
		if _, done := conflicted[k]; done {
			return
		}
		var evs []id.EventID
		for _, s := range sets {
			if e, ok := s[k]; ok && !containsID(evs, e) {
				evs = append(evs, e)
			}
		}
		conflicted[k] = evs
	}
	for k, e := range sets[0] {
		same := true
		for _, s := range sets[1:] {
			if o, ok := s[k]; !ok || o != e {
				same = false
				break
			}
		}
		if same {
			unconflicted[k] = e
		} else {
			addConflict(k)
		}
	}
	for _, s := range sets[1:] {
		for k := range s {
			if _, ok := unconflicted[k]; !ok {
				addConflict(k)
			}
		}
	}
	return unconflicted, conflicted
}

func containsID(ids []id.EventID, want id.EventID) bool {
	for _, v := range ids {
		if v == want {
			return true
		}
	}
	return false
}
