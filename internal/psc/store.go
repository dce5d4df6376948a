package psc

import (
	"container/list"
	"sync"
	"time"
)

// attempt is one login started by Start and not yet finished. The PKCE
// verifier and the nonce never leave the server: only the state travels
// through the browser.
type attempt struct {
	state          string
	nonce          string
	verifier       string
	clientRedirect string
	expires        time.Time
	elem           *list.Element
}

// attemptStore keeps pending logins in memory.
//
// It is local to one process: with several hub instances behind a load
// balancer, the browser's return to the callback must reach the instance that
// called Start (sticky sessions), or this store must later be replaced by a
// shared one. An attempt lost that way surfaces as ErrUnknownState and the
// user simply starts over.
//
// The store is bounded because Start is reachable without authentication: an
// unbounded map would let anyone exhaust memory by requesting redirects.
type attemptStore struct {
	mu      sync.Mutex
	byState map[string]*attempt
	// order holds attempts oldest first. The TTL is the same for every
	// attempt, so oldest is also soonest to expire, which makes sweeping and
	// eviction O(1) per attempt instead of a scan of the whole map.
	order *list.List
	ttl   time.Duration
	max   int
	now   func() time.Time
}

func newAttemptStore(ttl time.Duration, max int, now func() time.Time) *attemptStore {
	return &attemptStore{
		byState: make(map[string]*attempt),
		order:   list.New(),
		ttl:     ttl,
		max:     max,
		now:     now,
	}
}

func (s *attemptStore) put(a *attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	// When full, the oldest attempt goes: a flood then costs legitimate users
	// at most a restart of a login that was close to expiring anyway, whereas
	// refusing new attempts would lock everybody out for the whole TTL.
	for len(s.byState) >= s.max {
		s.removeLocked(s.order.Front().Value.(*attempt))
	}
	a.expires = now.Add(s.ttl)
	a.elem = s.order.PushBack(a)
	s.byState[a.state] = a
}

// take removes the attempt whatever happens next, so a state can be used once
// only: a replayed callback (browser back button, leaked URL) cannot finish a
// second login.
func (s *attemptStore) take(state string) (*attempt, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byState[state]
	if !ok {
		return nil, false
	}
	s.removeLocked(a)
	if !s.now().Before(a.expires) {
		return nil, false
	}
	return a, true
}

func (s *attemptStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byState)
}

func (s *attemptStore) sweepLocked(now time.Time) {
	for e := s.order.Front(); e != nil; e = s.order.Front() {
		a := e.Value.(*attempt)
		if now.Before(a.expires) {
			return
		}
		s.removeLocked(a)
	}
}

func (s *attemptStore) removeLocked(a *attempt) {
	delete(s.byState, a.state)
	s.order.Remove(a.elem)
}
