package consent

import (
	"sync"
	"time"
)

// attempts counts wrong link codes per app (door) in fixed windows: after
// max wrong codes within a window, the app's link-code binds are refused
// until the window ends, right code or not, so guessing gains nothing.
//
// The count is per hub instance. A bridge holds one socket on one
// instance; an appservice may spread its calls over n instances and so
// gets at most n × max tries per window. With 40-bit codes, live for
// minutes and bound to one practitioner, that stays far from a useful
// guess rate (see docs/operator-guide.md).
type attempts struct {
	max    int
	window time.Duration

	mu sync.Mutex
	by map[string]*tries
}

type tries struct {
	start time.Time
	wrong int
}

func newAttempts(max int, window time.Duration) *attempts {
	return &attempts{max: max, window: window, by: map[string]*tries{}}
}

// locked reports whether door may not try a code now.
func (a *attempts) locked(door string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.by[door]
	return t != nil && now.Before(t.start.Add(a.window)) && t.wrong >= a.max
}

// wrong counts a wrong code and reports whether door is now locked.
func (a *attempts) wrong(door string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.by[door]
	if t == nil || !now.Before(t.start.Add(a.window)) {
		if len(a.by) > 10_000 {
			// Doors are registered apps, so this is a safety net only.
			for d, old := range a.by {
				if !now.Before(old.start.Add(a.window)) {
					delete(a.by, d)
				}
			}
		}
		t = &tries{start: now}
		a.by[door] = t
	}
	t.wrong++
	return t.wrong >= a.max
}
