// Package demo is a small standalone messenger, the kind of app a vendor
// connects to the hub: it has its own users and its own web page, and
// reaches everyone else (other apps, Matrix clients) through the Bridge
// Protocol SDK. It keeps everything in memory: it is a demonstration and
// a worked example of the SDK, not a product.
package demo

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/eimis-hub/eimis/bridges/sdk"
)

//go:embed web
var web embed.FS

// Config of one app.
type Config struct {
	// Name is shown on the page ("App A").
	Name string
	// Color is the page's accent colour, so two apps side by side are
	// told apart at a glance.
	Color string
	// HubURL and Token connect the app's bridge (eimis-hub bridge add).
	HubURL, Token string
	// Users are the practitioners (idNat) who use this app.
	Users []string
	Log   *slog.Logger
}

// Message is one message as the page shows it.
type Message struct {
	ID       string    `json:"id"`
	Sender   string    `json:"sender"`
	Name     string    `json:"name"`
	Body     string    `json:"body"`
	TS       time.Time `json:"ts"`
	External bool      `json:"external"` // sent from another app or a Matrix client
}

// Room is a conversation as the page shows it.
type Room struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Members  map[string]bool `json:"-"` // user IDs joined
	Messages []Message       `json:"messages"`
	seen     map[string]bool // event IDs, for at-least-once delivery
}

// User is one of the app's users, as bound on the hub.
type User struct {
	IDNat  string `json:"idnat"`
	UserID string `json:"user_id"`
	Name   string `json:"name"`
}

// App is a running demo messenger.
type App struct {
	cfg    Config
	client *sdk.Client
	log    *slog.Logger

	mu    sync.Mutex
	users map[string]*User // by user ID
	names map[string]string
	rooms map[string]*Room
	subs  map[chan []byte]bool
	ready chan struct{}
	// stopped is closed when Run returns, ending the pages' event streams
	// (an HTTP server's shutdown waits for them).
	stopped chan struct{}
}

// New builds an app; Run connects it.
func New(cfg Config) (*App, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = "Demo"
	}
	if cfg.Color == "" {
		cfg.Color = "#0063cb"
	}
	a := &App{cfg: cfg, log: cfg.Log, users: map[string]*User{}, names: map[string]string{},
		rooms: map[string]*Room{}, subs: map[chan []byte]bool{}, ready: make(chan struct{}), stopped: make(chan struct{})}
	c, err := sdk.New(sdk.Config{
		URL: cfg.HubURL, Token: cfg.Token, Client: "eimis-demo/1 (" + cfg.Name + ")",
		OnEvent: a.onEvent, OnConnect: a.onConnect, Logger: cfg.Log,
		OnUserRevoked: func(_ context.Context, r sdk.UserRevoked) {
			a.log.Warn("user revoked by the hub", "user", r.UserID)
			a.mu.Lock()
			delete(a.users, string(r.UserID))
			a.mu.Unlock()
			a.broadcast(map[string]any{"type": "users"})
		},
	})
	if err != nil {
		return nil, err
	}
	a.client = c
	return a, nil
}

// Run connects to the hub until ctx ends.
func (a *App) Run(ctx context.Context) error {
	defer close(a.stopped)
	return a.client.Run(ctx)
}

// Ready is closed once the app's users are bound.
func (a *App) Ready() <-chan struct{} { return a.ready }

func (a *App) onConnect(ctx context.Context, w sdk.Welcome) {
	go func() {
		for _, idnat := range a.cfg.Users {
			u, err := a.client.Bind(ctx, idnat)
			if err != nil {
				a.log.Error("bind refused", "idnat", idnat, "err", err)
				continue
			}
			a.mu.Lock()
			a.users[string(u.UserID)] = &User{IDNat: u.IDNat, UserID: string(u.UserID), Name: u.DisplayName}
			a.names[string(u.UserID)] = u.DisplayName
			a.mu.Unlock()
			for _, m := range u.Rooms {
				a.loadRoom(ctx, u.IDNat, m)
			}
		}
		select {
		case <-a.ready:
		default:
			close(a.ready)
		}
		a.broadcast(map[string]any{"type": "users"})
	}()
}

// loadRoom learns a room the user was already in (from another app).
func (a *App) loadRoom(ctx context.Context, as string, m sdk.RoomMembership) {
	if m.Membership == "invite" {
		if _, err := a.client.Join(ctx, as, m.RoomID); err != nil {
			a.log.Warn("join failed", "room", m.RoomID, "err", err)
		}
	}
	info, err := a.client.RoomInfo(ctx, as, m.RoomID)
	if err != nil {
		return
	}
	a.loadHistory(ctx, as, m.RoomID)
	a.mu.Lock()
	r := a.room(string(info.RoomID))
	r.Name = info.Name
	for _, mem := range info.Members {
		a.names[string(mem.UserID)] = mem.DisplayName
		if mem.Membership == "join" {
			r.Members[string(mem.UserID)] = true
		}
	}
	a.mu.Unlock()
}

// loadHistory shows the messages the room had before our user joined
// (those the hub lets them see): the live feed starts at the join.
func (a *App) loadHistory(ctx context.Context, as string, room sdk.RoomID) {
	evs, err := a.client.History(ctx, as, room, 50)
	if err != nil {
		a.log.Warn("history", "room", room, "err", err)
		return
	}
	for _, ev := range evs {
		if ev.Type == "m.room.message" || ev.Type == "m.room.name" {
			_ = a.onEvent(ctx, ev)
		}
	}
	// What came before the join goes before what the feed brought since.
	a.mu.Lock()
	r := a.room(string(room))
	slices.SortStableFunc(r.Messages, func(x, y Message) int { return x.TS.Compare(y.TS) })
	a.mu.Unlock()
}

// room returns (creating) a room; a.mu held.
func (a *App) room(id string) *Room {
	r, ok := a.rooms[id]
	if !ok {
		r = &Room{ID: id, Members: map[string]bool{}, seen: map[string]bool{}}
		a.rooms[id] = r
	}
	return r
}

func (a *App) onEvent(ctx context.Context, ev *sdk.Event) error {
	a.mu.Lock()
	r := a.room(string(ev.RoomID))
	if r.seen[string(ev.ID)] {
		a.mu.Unlock()
		return nil
	}
	r.seen[string(ev.ID)] = true
	var invited []string
	switch ev.Type {
	case "m.room.name":
		var c struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		r.Name = c.Name
	case "m.room.member":
		var c struct {
			Membership  string `json:"membership"`
			DisplayName string `json:"displayname"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		if ev.StateKey != nil {
			who := *ev.StateKey
			if c.DisplayName != "" {
				a.names[who] = c.DisplayName
			}
			r.Members[who] = c.Membership == "join"
			if c.Membership == "invite" && a.users[who] != nil {
				invited = append(invited, a.users[who].IDNat)
			}
			if r.Name == "" {
				for _, s := range ev.InviteState {
					if s.Type == "m.room.name" {
						var n struct {
							Name string `json:"name"`
						}
						_ = json.Unmarshal(s.Content, &n)
						r.Name = n.Name
					}
				}
			}
		}
	case "m.room.message":
		if m, ok := ev.Message(); ok {
			if m.Replaces != "" {
				for i := range r.Messages {
					if r.Messages[i].ID == string(m.Replaces) {
						r.Messages[i].Body = m.Body
					}
				}
				break
			}
			_, ours := a.users[string(ev.Sender)]
			// The name is looked up when the page asks: a member's name may
			// be learnt after their first message (RoomInfo after a join).
			r.Messages = append(r.Messages, Message{ID: string(ev.ID), Sender: string(ev.Sender),
				Body: m.Body, TS: ev.Timestamp, External: !ours})
		}
	}
	a.mu.Unlock()
	for _, idnat := range invited {
		// A demo accepts invitations at once; a real app would ask. Joined
		// off the event handler, which must return for the next event.
		go func() {
			ctx := context.WithoutCancel(ctx)
			if _, err := a.client.Join(ctx, idnat, ev.RoomID); err != nil {
				a.log.Warn("join failed", "room", ev.RoomID, "err", err)
				return
			}
			// Who was there before us: names and the room's name.
			a.loadRoom(ctx, idnat, sdk.RoomMembership{RoomID: ev.RoomID, Membership: "join"})
			a.broadcast(map[string]any{"type": "room", "room": string(ev.RoomID)})
		}()
	}
	a.broadcast(map[string]any{"type": "room", "room": string(ev.RoomID)})
	return nil
}

// nameOf is a user's display name; a.mu held.
func (a *App) nameOf(userID string) string {
	if n := a.names[userID]; n != "" {
		return n
	}
	return userID
}

func (a *App) broadcast(v any) {
	b, _ := json.Marshal(v)
	a.mu.Lock()
	defer a.mu.Unlock()
	for ch := range a.subs {
		select {
		case ch <- b:
		default: // a slow page misses a nudge and reloads on the next
		}
	}
}

// Handler serves the page and its API.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(web, "web")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/config", a.apiConfig)
	mux.HandleFunc("GET /api/rooms", a.apiRooms)
	mux.HandleFunc("GET /api/events", a.apiEvents)
	mux.HandleFunc("POST /api/send", a.apiSend)
	mux.HandleFunc("POST /api/rooms", a.apiCreateRoom)
	mux.HandleFunc("GET /api/search", a.apiSearch)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	status := http.StatusBadGateway
	var se *sdk.Error
	if errors.As(err, &se) {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (a *App) apiConfig(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	users := make([]User, 0, len(a.users))
	for _, u := range a.users {
		users = append(users, *u)
	}
	a.mu.Unlock()
	sort.Slice(users, func(i, j int) bool { return users[i].Name < users[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"name": a.cfg.Name, "color": a.cfg.Color, "users": users})
}

// apiRooms lists the rooms of one of the app's users (?as=user ID).
func (a *App) apiRooms(w http.ResponseWriter, r *http.Request) {
	as := r.URL.Query().Get("as")
	a.mu.Lock()
	out := []Room{}
	for _, room := range a.rooms {
		if !room.Members[as] {
			continue
		}
		c := *room
		c.Messages = append([]Message{}, room.Messages...) // [] rather than null for the page
		for i := range c.Messages {
			c.Messages[i].Name = a.nameOf(c.Messages[i].Sender)
		}
		if c.Name == "" {
			var others []string
			for m, in := range room.Members {
				if in && m != as {
					others = append(others, a.nameOf(m))
				}
			}
			sort.Strings(others)
			c.Name = strings.Join(others, ", ")
		}
		out = append(out, c)
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"rooms": out})
}

// apiEvents nudges the page (Server-Sent Events) when something changed.
func (a *App) apiEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch := make(chan []byte, 16)
	a.mu.Lock()
	a.subs[ch] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.subs, ch)
		a.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, ": hello\n\n")
	fl.Flush()
	tick := time.NewTicker(20 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.stopped:
			return
		case b := <-ch:
			fmt.Fprintf(w, "data: %s\n\n", b)
			fl.Flush()
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			fl.Flush()
		}
	}
}

func (a *App) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad JSON: " + err.Error()})
		return false
	}
	return true
}

func (a *App) own(userID string) (*User, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.users[userID]
	return u, ok
}

func (a *App) apiSend(w http.ResponseWriter, r *http.Request) {
	var req struct {
		As   string `json:"as"`
		Room string `json:"room"`
		Text string `json:"text"`
		Txn  string `json:"txn"`
	}
	if !a.decode(w, r, &req) {
		return
	}
	if _, ok := a.own(req.As); !ok || strings.TrimSpace(req.Text) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unknown user or empty message"})
		return
	}
	if req.Txn == "" {
		req.Txn = rand.Text()
	}
	ev, err := a.client.SendText(r.Context(), req.As, sdk.RoomID(req.Room), req.Txn, req.Text)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"event_id": string(ev)})
}

func (a *App) apiCreateRoom(w http.ResponseWriter, r *http.Request) {
	var req struct {
		As     string   `json:"as"`
		Name   string   `json:"name"`
		Invite []string `json:"invite"`
	}
	if !a.decode(w, r, &req) {
		return
	}
	if _, ok := a.own(req.As); !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unknown user"})
		return
	}
	room, err := a.client.CreateRoom(r.Context(), sdk.CreateRoom{As: req.As, Name: req.Name, Invite: req.Invite, IsDirect: len(req.Invite) == 1 && req.Name == ""})
	if err != nil {
		fail(w, err)
		return
	}
	a.mu.Lock()
	rm := a.room(string(room))
	rm.Members[req.As] = true
	if rm.Name == "" {
		rm.Name = req.Name
	}
	a.mu.Unlock()
	a.broadcast(map[string]any{"type": "room", "room": string(room)})
	writeJSON(w, http.StatusOK, map[string]string{"room_id": string(room)})
}

func (a *App) apiSearch(w http.ResponseWriter, r *http.Request) {
	res, err := a.client.SearchDirectory(r.Context(), r.URL.Query().Get("q"), 10)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": res})
}
