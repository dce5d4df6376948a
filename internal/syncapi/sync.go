package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// ErrBadToken is a since/from token the hub did not issue.
var ErrBadToken = errors.New("invalid pagination token")

// Bus is what the sync API needs from NATS.
type Bus interface {
	WatchEvents(ctx context.Context, fn func(bus.EventMsg)) error
	PublishEphemeral(subject string, data []byte) error
	SubscribeEphemeral(subject string, fn func([]byte)) (func(), error)
}

// Store is what the sync API reads: stream heads, timelines (live and
// topological), state now and at a position, memberships, account data
// and receipts. It never writes.
type Store interface {
	MaxPos(ctx context.Context) (int64, error)
	StreamHeads(ctx context.Context) (store.Heads, error)
	AccountDataSince(ctx context.Context, userID string, from, to int64) ([]store.AccountData, error)
	ReceiptsSince(ctx context.Context, roomIDs []string, from, to int64) ([]store.Receipt, error)

	EventByID(ctx context.Context, eventID string) (*store.Event, error)
	RoomEvents(ctx context.Context, roomID string, from, to int64, limit int, dir store.Direction) ([]store.Event, error)
	RoomEventsTopo(ctx context.Context, roomID string, from store.TopoPos, limit int, dir store.Direction, minPos, maxPos int64) ([]store.Event, error)
	StateEventsBetween(ctx context.Context, roomID string, from, to int64) ([]store.Event, error)
	CurrentState(ctx context.Context, roomID string) ([]store.Event, error)
	CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (*store.Event, error)
	UserMemberships(ctx context.Context, userID string) ([]store.Membership, error)
	RoomMembers(ctx context.Context, roomID, membership string) ([]store.Membership, error)

	store.HistoryStore
}

// API computes sync responses.
type API struct {
	st         Store
	bus        Bus
	n          *Notifier
	log        *slog.Logger
	maxTimeout time.Duration
}

// New starts watching the bus.
func New(ctx context.Context, st Store, b Bus, log *slog.Logger, maxTimeout time.Duration, onWake func()) (*API, error) {
	a := &API{st: st, bus: b, n: NewNotifier(log, onWake), log: log, maxTimeout: maxTimeout}
	go a.watch(ctx)
	unsubTyping, err := b.SubscribeEphemeral(bus.SubjectTyping, a.n.OnTyping)
	if err != nil {
		return nil, fmt.Errorf("subscribe typing: %w", err)
	}
	unsubWake, err := b.SubscribeEphemeral(bus.SubjectWake, a.n.OnWake)
	if err != nil {
		unsubTyping()
		return nil, fmt.Errorf("subscribe wake: %w", err)
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				unsubTyping()
				unsubWake()
				return
			case now := <-t.C:
				a.n.ExpireTyping(now)
			}
		}
	}()
	return a, nil
}

// watch feeds the notifier from NATS for as long as ctx lives, setting the
// watch up again if it fails: a notifier that silently stopped would turn
// every long-poll into a timeout.
func (a *API) watch(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.bus.WatchEvents(ctx, a.n.OnEvent)
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("event watch ended, restarting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Accepted implements the room server's publisher hook: wake local
// long-polls the moment events commit.
func (a *API) Accepted(evs []store.Event) {
	msgs := make([]bus.EventMsg, len(evs))
	for i, e := range evs {
		msgs[i] = bus.EventMsg{RoomID: e.RoomID, EventID: e.EventID, Type: e.Type, Sender: e.Sender, StateKey: e.StateKey, Membership: e.Membership, Pos: e.Pos}
	}
	a.n.OnLocalEvents(msgs)
}

// Notifier exposes the notifier (tests, metrics).
func (a *API) Notifier() *Notifier { return a.n }

// SetTyping broadcasts a typing change to every instance.
func (a *API) SetTyping(room, user string, typing bool, timeout time.Duration) error {
	if timeout > 2*time.Minute {
		timeout = 2 * time.Minute
	}
	data, _ := json.Marshal(typingMsg{Room: room, User: user, Typing: typing, TimeoutMS: timeout.Milliseconds()})
	return a.bus.PublishEphemeral(bus.SubjectTyping, data)
}

// Wake tells every instance that a user's or room's non-event data
// changed.
func (a *API) Wake(room, user string) {
	data, _ := json.Marshal(wakeMsg{Room: room, User: user})
	if err := a.bus.PublishEphemeral(bus.SubjectWake, data); err != nil {
		a.log.Warn("publish wake", "err", err)
	}
}

// token is the since/next_batch token: a stream position and this
// instance's typing serial.
type token struct {
	pos    int64
	typing int64
}

func (t token) String() string { return fmt.Sprintf("s%d_%d", t.pos, t.typing) }

func parseToken(s string) (token, error) {
	if s == "" {
		return token{}, nil
	}
	rest, ok := strings.CutPrefix(s, "s")
	if !ok {
		return token{}, ErrBadToken
	}
	p, ty, _ := strings.Cut(rest, "_")
	pos, err := strconv.ParseInt(p, 10, 64)
	if err != nil || pos < 0 {
		return token{}, ErrBadToken
	}
	var typ int64
	if ty != "" {
		if typ, err = strconv.ParseInt(ty, 10, 64); err != nil {
			return token{}, ErrBadToken
		}
	}
	return token{pos: pos, typing: typ}, nil
}

// ParsePos reads the stream position of a since or pagination token. A
// topological pagination token gives the position of the event it
// follows (0 for history that never had a live position).
func ParsePos(s string) (int64, error) {
	if gap, ok, err := parseTopo(s); ok {
		return max(gap.Pos, 0), err
	}
	t, err := parseToken(s)
	return t.pos, err
}

// Request is a decoded /sync call.
type Request struct {
	UserID        string
	Since         string
	Timeout       time.Duration
	FullState     bool
	TimelineLimit int
}

// Response is the /sync body.
type Response struct {
	NextBatch   string      `json:"next_batch"`
	Rooms       RoomsBlock  `json:"rooms"`
	AccountData EventsBlock `json:"account_data"`
	Presence    EventsBlock `json:"presence"`
	ToDevice    EventsBlock `json:"to_device"`
	DeviceLists struct {
		Changed []string `json:"changed"`
		Left    []string `json:"left"`
	} `json:"device_lists"`
	OneTimeKeysCount map[string]int `json:"device_one_time_keys_count"`
	FallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

// RoomsBlock groups rooms by the user's membership.
type RoomsBlock struct {
	Join   map[string]*JoinedRoom  `json:"join"`
	Invite map[string]*InvitedRoom `json:"invite"`
	Leave  map[string]*LeftRoom    `json:"leave"`
	Knock  map[string]any          `json:"knock"`
}

// EventsBlock is {"events": [...]}.
type EventsBlock struct {
	Events []any `json:"events"`
}

// Timeline of a room section.
type Timeline struct {
	Events    []rooms.ClientEvent `json:"events"`
	Limited   bool                `json:"limited"`
	PrevBatch string              `json:"prev_batch,omitempty"`
}

// StateBlock of a room section.
type StateBlock struct {
	Events []rooms.ClientEvent `json:"events"`
}

// JoinedRoom is a rooms.join entry.
type JoinedRoom struct {
	Timeline            Timeline    `json:"timeline"`
	State               StateBlock  `json:"state"`
	Ephemeral           EventsBlock `json:"ephemeral"`
	AccountData         EventsBlock `json:"account_data"`
	Summary             *Summary    `json:"summary,omitempty"`
	UnreadNotifications struct {
		Highlight    int `json:"highlight_count"`
		Notification int `json:"notification_count"`
	} `json:"unread_notifications"`
}

// Summary helps clients name rooms without full member lists.
type Summary struct {
	Heroes  []string `json:"m.heroes"`
	Joined  int      `json:"m.joined_member_count"`
	Invited int      `json:"m.invited_member_count"`
}

// InvitedRoom is a rooms.invite entry.
type InvitedRoom struct {
	InviteState struct {
		Events []rooms.StrippedState `json:"events"`
	} `json:"invite_state"`
}

// LeftRoom is a rooms.leave entry.
type LeftRoom struct {
	Timeline    Timeline    `json:"timeline"`
	State       StateBlock  `json:"state"`
	AccountData EventsBlock `json:"account_data"`
}

func emptyResponse() *Response {
	r := &Response{}
	r.Rooms.Join = map[string]*JoinedRoom{}
	r.Rooms.Invite = map[string]*InvitedRoom{}
	r.Rooms.Leave = map[string]*LeftRoom{}
	r.Rooms.Knock = map[string]any{}
	r.AccountData.Events = []any{}
	r.Presence.Events = []any{}
	r.ToDevice.Events = []any{}
	r.DeviceLists.Changed = []string{}
	r.DeviceLists.Left = []string{}
	r.OneTimeKeysCount = map[string]int{"signed_curve25519": 0}
	r.FallbackKeyTypes = []string{}
	return r
}

func (r *Response) empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 && len(r.AccountData.Events) == 0
}

// Sync answers one /sync request, long-polling when there is nothing new.
func (a *API) Sync(ctx context.Context, req Request) (*Response, error) {
	since, err := parseToken(req.Since)
	if err != nil {
		return nil, err
	}
	if since.typing > a.n.currentTypingSerial() {
		// The token came from another instance: its typing serial means
		// nothing here, so resend current typing state.
		since.typing = 0
	}
	if req.TimelineLimit <= 0 {
		req.TimelineLimit = 10
	}
	timeout := min(req.Timeout, a.maxTimeout)
	deadline := time.Now().Add(timeout)
	// Every persisted change (event, receipt, account data) takes a
	// position from one sequence, so memberships read at position P stay
	// valid while the head is still P, and an unchanged head means only
	// typing can be new.
	var mems []store.Membership
	memsAt := int64(-1)
	for attempt := 0; ; attempt++ {
		// Register before reading the head: an event committed after the
		// read wakes this waiter, one committed before is in the response.
		w := a.n.register(req.UserID, watchRooms(mems))
		heads, err := a.st.StreamHeads(ctx)
		if err != nil {
			a.n.unregister(w)
			return nil, err
		}
		now, trusted := heads.Pos, &heads
		if memsAt < 0 || heads.Membership > memsAt {
			fresh, err := a.st.UserMemberships(ctx, req.UserID)
			if err != nil {
				a.n.unregister(w)
				return nil, err
			}
			newest := now
			for _, m := range fresh {
				newest = max(newest, m.Pos)
			}
			if newest > now {
				// A membership committed after the heads were read: read
				// again, so every head describes the same moment.
				if attempt < 3 {
					a.n.unregister(w)
					memsAt = -1
					continue
				}
				// Still racing: answer as of that membership (positions
				// are visible in commit order, so all below it are
				// visible), without trusting the per-kind heads.
				now, trusted = newest, nil
			}
			changed := memsAt < 0 || !slices.Equal(watchRooms(fresh), watchRooms(mems))
			mems, memsAt = fresh, now
			if changed {
				// Watch the right rooms before computing.
				a.n.unregister(w)
				continue
			}
		}
		resp, err := a.compute(ctx, req, since, mems, now, trusted)
		if err != nil || !resp.empty() || since.pos == 0 || req.FullState || timeout <= 0 {
			a.n.unregister(w)
			return resp, err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			a.n.unregister(w)
			return resp, nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-w.ch:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		a.n.unregister(w)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			// One last look, so an event that woke us at the deadline is
			// not left for the next request.
			timeout = 0
		}
	}
}

// watchRooms are the rooms whose events should wake the user's long-poll.
func watchRooms(mems []store.Membership) []string {
	var out []string
	for _, m := range mems {
		if m.Membership == "join" || m.Membership == "invite" {
			out = append(out, m.RoomID)
		}
	}
	return out
}

// compute builds the response for positions (since, now]. heads, when
// non-nil, describe that same `now` and let it skip queries for kinds
// that did not change since the token.
func (a *API) compute(ctx context.Context, req Request, since token, mems []store.Membership, now int64, heads *store.Heads) (*Response, error) {
	if since.pos > now {
		// A token from a newer database (or a restored backup): treat as
		// "nothing missed" rather than replaying history.
		since.pos = now
	}
	next := token{pos: now, typing: a.n.currentTypingSerial()}
	resp := emptyResponse()
	resp.NextBatch = next.String()
	initial := since.pos == 0 || req.FullState

	var joined []string
	for _, m := range mems {
		switch m.Membership {
		case "join":
			if m.Pos > now {
				continue // joined after this response's position: next time
			}
			joined = append(joined, m.RoomID)
			fresh := initial || m.Pos > since.pos
			jr, err := a.joinedRoom(ctx, req, m, since, now, fresh)
			if err != nil {
				return nil, err
			}
			if jr != nil {
				resp.Rooms.Join[m.RoomID] = jr
			}
		case "invite":
			if (!initial && m.Pos <= since.pos) || m.Pos > now {
				continue
			}
			state, err := a.st.CurrentState(ctx, m.RoomID)
			if err != nil {
				return nil, err
			}
			stripped, err := rooms.InviteState(state, req.UserID)
			if err != nil {
				return nil, err
			}
			ir := &InvitedRoom{}
			ir.InviteState.Events = stripped
			resp.Rooms.Invite[m.RoomID] = ir
		case "leave", "ban":
			if initial || m.Pos <= since.pos || m.Pos > now {
				continue
			}
			// The departure is the last thing a former member sees, and
			// what came before it only as the room's visibility allowed.
			evs, err := a.leftTimeline(ctx, req, m, since.pos)
			if err != nil {
				return nil, err
			}
			slices.Reverse(evs)
			tl, err := timeline(evs, false)
			if err != nil {
				return nil, err
			}
			resp.Rooms.Leave[m.RoomID] = &LeftRoom{Timeline: tl, State: StateBlock{Events: []rooms.ClientEvent{}}, AccountData: EventsBlock{Events: []any{}}}
		}
	}

	receipts, accountData := true, true
	if heads != nil && !initial {
		receipts = heads.Receipt > since.pos
		accountData = heads.AccountData > since.pos
	}
	if err := a.ephemeral(ctx, resp, joined, since, now, initial, req, receipts); err != nil {
		return nil, err
	}
	if accountData {
		if err := a.accountData(ctx, resp, req.UserID, joined, since.pos, now, initial); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

func timeline(evs []store.Event, limited bool) (Timeline, error) {
	ces, err := rooms.ToClientEvents(evs, false)
	if err != nil {
		return Timeline{}, err
	}
	tl := Timeline{Events: ces, Limited: limited}
	if len(evs) > 0 {
		tl.PrevBatch = token{pos: evs[0].Pos - 1}.String()
	}
	return tl, nil
}

// leftTimeline is the newest events, up to the user's departure, of a
// room they left since the token, newest first.
func (a *API) leftTimeline(ctx context.Context, req Request, m store.Membership, since int64) ([]store.Event, error) {
	v, err := a.View(ctx, m.RoomID, req.UserID)
	if errors.Is(err, ErrNotVisible) {
		return nil, nil // e.g. an invite refused in a shared room: the room moves to "leave", empty
	} else if err != nil {
		return nil, err
	}
	return a.events(ctx, v, since, m.Pos, req.TimelineLimit, store.Backward)
}

// joinedRoom builds a rooms.join entry, or nil when nothing changed.
func (a *API) joinedRoom(ctx context.Context, req Request, m store.Membership, since token, now int64, fresh bool) (*JoinedRoom, error) {
	roomID := m.RoomID
	if !fresh && since.pos >= now {
		return nil, nil // nothing committed since the token
	}
	from := since.pos
	if fresh {
		from = 0
	}
	// One more than the limit tells whether the timeline is limited.
	evs, err := a.st.RoomEvents(ctx, roomID, from, now, req.TimelineLimit+1, store.Backward)
	if err != nil {
		return nil, err
	}
	if n := len(evs); n > 0 && evs[n-1].Pos < m.Pos {
		// The timeline reaches back before the user's join, where what
		// they may see depends on the room's history visibility. Every
		// event after the join is visible to a member, so an incremental
		// sync (the hot path) never gets here.
		v, err := a.View(ctx, roomID, req.UserID)
		if err != nil {
			return nil, err
		}
		if evs, err = a.events(ctx, v, from, now, req.TimelineLimit+1, store.Backward); err != nil {
			return nil, err
		}
	}
	limited := len(evs) > req.TimelineLimit
	if limited {
		evs = evs[:req.TimelineLimit]
	}
	slices.Reverse(evs)
	if !fresh && len(evs) == 0 {
		return nil, nil // ephemeral-only changes are added later
	}
	tl, err := timeline(evs, limited)
	if err != nil {
		return nil, err
	}
	jr := newJoinedRoom()
	jr.Timeline = tl
	var state []store.Event
	switch {
	case fresh:
		cur, err := a.st.CurrentState(ctx, roomID)
		if err != nil {
			return nil, err
		}
		inTimeline := map[string]bool{}
		for _, e := range evs {
			inTimeline[e.EventID] = true
		}
		for _, e := range cur {
			if !inTimeline[e.EventID] {
				state = append(state, e)
			}
		}
	case limited && len(evs) > 0:
		// State that changed in the gap the client will not see.
		state, err = a.st.StateEventsBetween(ctx, roomID, since.pos, evs[0].Pos-1)
		if err != nil {
			return nil, err
		}
	}
	if jr.State.Events, err = rooms.ToClientEvents(state, false); err != nil {
		return nil, err
	}
	if fresh || hasMember(evs) || hasMember(state) {
		if jr.Summary, err = a.summary(ctx, roomID, req.UserID); err != nil {
			return nil, err
		}
	}
	return jr, nil
}

func newJoinedRoom() *JoinedRoom {
	jr := &JoinedRoom{}
	jr.Timeline.Events = []rooms.ClientEvent{}
	jr.State.Events = []rooms.ClientEvent{}
	jr.Ephemeral.Events = []any{}
	jr.AccountData.Events = []any{}
	return jr
}

func hasMember(evs []store.Event) bool {
	for _, e := range evs {
		if e.Type == "m.room.member" {
			return true
		}
	}
	return false
}

func (a *API) summary(ctx context.Context, roomID, self string) (*Summary, error) {
	mems, err := a.st.RoomMembers(ctx, roomID, "")
	if err != nil {
		return nil, err
	}
	s := &Summary{Heroes: []string{}}
	for _, m := range mems {
		switch m.Membership {
		case "join":
			s.Joined++
		case "invite":
			s.Invited++
		default:
			continue
		}
		if m.UserID != self && len(s.Heroes) < 5 {
			s.Heroes = append(s.Heroes, m.UserID)
		}
	}
	sort.Strings(s.Heroes)
	return s, nil
}

func (a *API) ephemeral(ctx context.Context, resp *Response, joined []string, since token, now int64, initial bool, req Request, receipts bool) error {
	room := func(id string) *JoinedRoom {
		jr := resp.Rooms.Join[id]
		if jr == nil {
			jr = newJoinedRoom()
			resp.Rooms.Join[id] = jr
		}
		return jr
	}
	for _, r := range joined {
		tser := since.typing
		if initial {
			tser = -1
		}
		if users, changed := a.n.typingSince(r, tser); changed {
			room(r).Ephemeral.Events = append(room(r).Ephemeral.Events, map[string]any{
				"type": "m.typing", "content": map[string]any{"user_ids": users},
			})
		}
	}
	if len(joined) == 0 || !receipts {
		return nil
	}
	from := since.pos
	if initial {
		from = 0
	}
	if from >= now {
		return nil
	}
	rcpts, err := a.st.ReceiptsSince(ctx, joined, from, now)
	if err != nil {
		return err
	}
	// content: {event_id: {receipt_type: {user_id: {ts}}}}
	byRoom := map[string]map[string]map[string]map[string]any{}
	for _, rc := range rcpts {
		if rc.Type == "m.read.private" && rc.UserID != req.UserID {
			continue
		}
		c := byRoom[rc.RoomID]
		if c == nil {
			c = map[string]map[string]map[string]any{}
			byRoom[rc.RoomID] = c
		}
		if c[rc.EventID] == nil {
			c[rc.EventID] = map[string]map[string]any{}
		}
		if c[rc.EventID][rc.Type] == nil {
			c[rc.EventID][rc.Type] = map[string]any{}
		}
		c[rc.EventID][rc.Type][rc.UserID] = map[string]any{"ts": rc.TS}
	}
	for r, c := range byRoom {
		room(r).Ephemeral.Events = append(room(r).Ephemeral.Events, map[string]any{"type": "m.receipt", "content": c})
	}
	return nil
}

func (a *API) accountData(ctx context.Context, resp *Response, user string, joined []string, since, now int64, initial bool) error {
	from := since
	if initial {
		from = 0
	}
	if from >= now {
		return nil
	}
	ads, err := a.st.AccountDataSince(ctx, user, from, now)
	if err != nil {
		return err
	}
	for _, ad := range ads {
		ev := map[string]any{"type": ad.Type, "content": json.RawMessage(ad.Content)}
		if ad.RoomID == "" {
			resp.AccountData.Events = append(resp.AccountData.Events, ev)
			continue
		}
		if jr := resp.Rooms.Join[ad.RoomID]; jr != nil {
			jr.AccountData.Events = append(jr.AccountData.Events, ev)
		} else if lr := resp.Rooms.Leave[ad.RoomID]; lr != nil {
			lr.AccountData.Events = append(lr.AccountData.Events, ev)
		} else if !initial && slices.Contains(joined, ad.RoomID) {
			jr := newJoinedRoom()
			jr.AccountData.Events = append(jr.AccountData.Events, ev)
			resp.Rooms.Join[ad.RoomID] = jr
		}
	}
	return nil
}
