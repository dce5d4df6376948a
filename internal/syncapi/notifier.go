// Package syncapi serves /sync and /messages. Long-polls are woken by a
// per-instance notifier fed from NATS, so a /sync waiting on any hub
// instance wakes when an event is accepted on any other.
package syncapi

import (
	"encoding/json"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/eimis-hub/eimis/internal/bus"
)

// Notifier wakes waiting /sync requests. Lock order: only n.mu.
type Notifier struct {
	mu     sync.Mutex
	byRoom map[string]map[*waiter]struct{}
	byUser map[string]map[*waiter]struct{}

	typing       map[string]*roomTyping
	typingSerial int64

	// local remembers events this instance already announced in-process,
	// so their copy arriving from NATS does not wake waiters twice.
	local    map[string]struct{}
	localIDs []string
	localPos int
	log      *slog.Logger
	onWake   func()

	// Ephemeral hooks (appservices): called with mu held, so they must
	// not block nor call back into the notifier.
	onTypingChange func(room string, users []string)
	onRoomWake     func(room string)
}

// SetEphemeralHooks has typing be reported, on every change of a room's
// typing users (their new sorted list), and room wakes (a change to a room
// that is not an event: receipts) by room ID.
func (n *Notifier) SetEphemeralHooks(typing func(room string, users []string), roomWake func(room string)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.onTypingChange, n.onRoomWake = typing, roomWake
}

// typingChangedLocked reports a change of room's typing users to the hook.
func (n *Notifier) typingChangedLocked(room string, rt *roomTyping) {
	if n.onTypingChange == nil {
		return
	}
	users := make([]string, 0, len(rt.users))
	for u := range rt.users {
		users = append(users, u)
	}
	sort.Strings(users)
	n.onTypingChange(room, users)
}

type waiter struct {
	user  string
	rooms []string
	ch    chan struct{}
}

type roomTyping struct {
	users  map[string]time.Time // user → expiry
	serial int64
}

// NewNotifier returns an empty notifier.
func NewNotifier(log *slog.Logger, onWake func()) *Notifier {
	if onWake == nil {
		onWake = func() {}
	}
	return &Notifier{
		byRoom: map[string]map[*waiter]struct{}{},
		byUser: map[string]map[*waiter]struct{}{},
		typing: map[string]*roomTyping{},
		local:  map[string]struct{}{}, localIDs: make([]string, localRing),
		log: log, onWake: onWake,
	}
}

func (n *Notifier) register(user string, rooms []string) *waiter {
	w := &waiter{user: user, rooms: rooms, ch: make(chan struct{}, 1)}
	n.mu.Lock()
	defer n.mu.Unlock()
	add := func(m map[string]map[*waiter]struct{}, k string) {
		s := m[k]
		if s == nil {
			s = map[*waiter]struct{}{}
			m[k] = s
		}
		s[w] = struct{}{}
	}
	add(n.byUser, user)
	for _, r := range rooms {
		add(n.byRoom, r)
	}
	return w
}

func (n *Notifier) unregister(w *waiter) {
	n.mu.Lock()
	defer n.mu.Unlock()
	del := func(m map[string]map[*waiter]struct{}, k string) {
		if s := m[k]; s != nil {
			delete(s, w)
			if len(s) == 0 {
				delete(m, k)
			}
		}
	}
	del(n.byUser, w.user)
	for _, r := range w.rooms {
		del(n.byRoom, r)
	}
}

func (n *Notifier) wakeLocked(room, user string) {
	wake := func(s map[*waiter]struct{}) {
		for w := range s {
			select {
			case w.ch <- struct{}{}:
				n.onWake()
			default:
			}
		}
	}
	if room != "" {
		wake(n.byRoom[room])
	}
	if user != "" {
		wake(n.byUser[user])
	}
}

// localRing bounds how many locally announced event IDs are remembered.
// An ID that falls out before its NATS copy arrives only costs one
// spurious wake-up.
const localRing = 16384

// OnLocalEvents wakes waiters for events committed by this instance, as
// soon as they are committed, without waiting for the NATS round trip
// (which includes JetStream's fsync). Other instances learn of the same
// events from NATS.
func (n *Notifier) OnLocalEvents(evs []bus.EventMsg) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range evs {
		if old := n.localIDs[n.localPos]; old != "" {
			delete(n.local, old)
		}
		n.localIDs[n.localPos] = m.EventID
		n.localPos = (n.localPos + 1) % localRing
		n.local[m.EventID] = struct{}{}
		n.wakeEventLocked(m)
	}
}

// OnEvent is fed every accepted event from NATS.
func (n *Notifier) OnEvent(m bus.EventMsg) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, seen := n.local[m.EventID]; seen {
		return
	}
	n.wakeEventLocked(m)
}

func (n *Notifier) wakeEventLocked(m bus.EventMsg) {
	target := ""
	if m.Type == "m.room.member" && m.StateKey != nil {
		// A user invited to or joining a room is not yet waiting on it.
		target = *m.StateKey
	}
	n.wakeLocked(m.RoomID, target)
}

// wakeMsg asks every instance to wake a user's or a room's waiters after
// a change that is not an event (account data, receipts).
type wakeMsg struct {
	Room string `json:"room,omitempty"`
	User string `json:"user,omitempty"`
}

// OnWake handles a wake message from NATS.
func (n *Notifier) OnWake(data []byte) {
	var m wakeMsg
	if err := json.Unmarshal(data, &m); err != nil {
		n.log.Warn("bad wake message", "err", err)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wakeLocked(m.Room, m.User)
	if m.Room != "" && n.onRoomWake != nil {
		n.onRoomWake(m.Room)
	}
}

// typingMsg is a typing change on the wire between instances.
type typingMsg struct {
	Room      string `json:"room"`
	User      string `json:"user"`
	Typing    bool   `json:"typing"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
}

// OnTyping applies a typing change from NATS.
func (n *Notifier) OnTyping(data []byte) {
	var m typingMsg
	if err := json.Unmarshal(data, &m); err != nil {
		n.log.Warn("bad typing message", "err", err)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	rt := n.typing[m.Room]
	if rt == nil {
		rt = &roomTyping{users: map[string]time.Time{}}
		n.typing[m.Room] = rt
	}
	_, was := rt.users[m.User]
	if m.Typing {
		rt.users[m.User] = time.Now().Add(time.Duration(m.TimeoutMS) * time.Millisecond)
		if was {
			return // a refresh changes nothing a client sees
		}
	} else {
		if !was {
			return
		}
		delete(rt.users, m.User)
	}
	n.typingSerial++
	rt.serial = n.typingSerial
	n.wakeLocked(m.Room, "")
	n.typingChangedLocked(m.Room, rt)
}

// ExpireTyping drops typing entries past their timeout.
func (n *Notifier) ExpireTyping(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for room, rt := range n.typing {
		changed := false
		for u, exp := range rt.users {
			if now.After(exp) {
				delete(rt.users, u)
				changed = true
			}
		}
		if changed {
			n.typingSerial++
			rt.serial = n.typingSerial
			n.wakeLocked(room, "")
			n.typingChangedLocked(room, rt)
		}
		if len(rt.users) == 0 && !changed {
			delete(n.typing, room)
		}
	}
}

// typingSince returns the typing users of room if they changed after serial.
func (n *Notifier) typingSince(room string, serial int64) ([]string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rt := n.typing[room]
	if rt == nil || rt.serial <= serial {
		return nil, false
	}
	users := make([]string, 0, len(rt.users))
	for u := range rt.users {
		users = append(users, u)
	}
	sort.Strings(users)
	return users, true
}

func (n *Notifier) currentTypingSerial() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.typingSerial
}
