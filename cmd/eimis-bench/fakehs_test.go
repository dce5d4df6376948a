package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fakeHS is just enough of a homeserver, in memory, to drive the bench's
// whole flow. All events live in one global log; a sync token is a
// position in it. Faults are injected per (user, bench seq).
type fakeHS struct {
	secret        string
	timelineLimit int
	// holdSyncUntil makes incremental syncs wait until that many messages
	// were sent, so every member's first post-load sync overflows the
	// timeline limit: a deterministic gap.
	holdSyncUntil int
	drop          func(user string, seq int64) bool
	dup           func(user string, seq int64) bool

	mu      sync.Mutex
	wake    chan struct{} // closed and replaced on every new event
	users   map[string]string
	tokens  map[string]string
	joined  map[string]map[string]bool
	invited map[string]map[string]bool
	events  []fakeEvent
	txns    map[string]string
	sends   int
	serial  int
}

type fakeEvent struct {
	room, id, sender, typ string
	content               json.RawMessage
	seq                   int64 // -1 unless a bench message
}

func newFakeHS() *fakeHS {
	return &fakeHS{
		wake: make(chan struct{}), users: map[string]string{}, tokens: map[string]string{},
		joined: map[string]map[string]bool{}, invited: map[string]map[string]bool{}, txns: map[string]string{},
	}
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, code string) {
	reply(w, status, map[string]string{"errcode": code, "error": code})
}

func (f *fakeHS) next(prefix string) string {
	f.serial++
	return prefix + strconv.Itoa(f.serial)
}

// appendEvent must be called with f.mu held.
func (f *fakeHS) appendEvent(ev fakeEvent) {
	f.events = append(f.events, ev)
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeHS) user(r *http.Request) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	return u, ok
}

func (f *fakeHS) newUser(w http.ResponseWriter, name, password string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, exists := f.users[name]; exists {
		fail(w, 400, "M_USER_IN_USE")
		return
	}
	f.users[name] = password
	tok := f.next("tok")
	f.tokens[tok] = "@" + name + ":fake"
	reply(w, 200, map[string]string{"user_id": "@" + name + ":fake", "access_token": tok})
}

func (f *fakeHS) visible(user string, ev *fakeEvent) bool {
	return f.joined[ev.room][user] && !(ev.seq >= 0 && f.drop != nil && f.drop(user, ev.seq))
}

func (ev *fakeEvent) json() map[string]any {
	return map[string]any{"type": ev.typ, "event_id": ev.id, "sender": ev.sender, "room_id": ev.room, "content": ev.content}
}

func (f *fakeHS) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/client/versions", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"versions": []string{"v1.11"}})
	})
	mux.HandleFunc("GET /_matrix/federation/v1/version", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"server": map[string]string{"name": "fakehs", "version": "0"}})
	})
	mux.HandleFunc("GET /_synapse/admin/v1/register", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		n := f.next("nonce")
		f.mu.Unlock()
		reply(w, 200, map[string]string{"nonce": n})
	})
	mux.HandleFunc("POST /_synapse/admin/v1/register", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Nonce, Username, Password, Mac string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		m := hmac.New(sha1.New, []byte(f.secret))
		m.Write([]byte(req.Nonce + "\x00" + req.Username + "\x00" + req.Password + "\x00notadmin"))
		if f.secret == "" || req.Mac != hex.EncodeToString(m.Sum(nil)) {
			fail(w, 403, "M_FORBIDDEN")
			return
		}
		f.newUser(w, req.Username, req.Password)
	})
	mux.HandleFunc("POST /_matrix/client/v3/register", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Auth               struct{ Type string }
			Username, Password string
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Auth.Type != "m.login.dummy" {
			reply(w, 401, map[string]any{"session": "s", "flows": []any{map[string]any{"stages": []string{"m.login.dummy"}}}})
			return
		}
		f.newUser(w, req.Username, req.Password)
	})
	mux.HandleFunc("POST /_matrix/client/v3/login", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Identifier struct{ User string }
			Password   string
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		defer f.mu.Unlock()
		if pw, ok := f.users[req.Identifier.User]; !ok || pw != req.Password {
			fail(w, 403, "M_FORBIDDEN")
			return
		}
		tok := f.next("tok")
		f.tokens[tok] = "@" + req.Identifier.User + ":fake"
		reply(w, 200, map[string]string{"user_id": f.tokens[tok], "access_token": tok})
	})
	mux.HandleFunc("POST /_matrix/client/v3/createRoom", func(w http.ResponseWriter, r *http.Request) {
		u, ok := f.user(r)
		if !ok {
			fail(w, 401, "M_UNKNOWN_TOKEN")
			return
		}
		var req struct{ Invite []string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		defer f.mu.Unlock()
		room := f.next("!r") + ":fake"
		f.joined[room] = map[string]bool{u: true}
		f.invited[room] = map[string]bool{}
		for _, i := range req.Invite {
			f.invited[room][i] = true
		}
		f.appendEvent(fakeEvent{room: room, id: f.next("$e"), sender: u, typ: "m.room.create", content: json.RawMessage(`{}`), seq: -1})
		reply(w, 200, map[string]string{"room_id": room})
	})
	mux.HandleFunc("POST /_matrix/client/v3/join/{room}", func(w http.ResponseWriter, r *http.Request) {
		u, ok := f.user(r)
		room := r.PathValue("room")
		f.mu.Lock()
		defer f.mu.Unlock()
		if !ok || !f.invited[room][u] {
			fail(w, 403, "M_FORBIDDEN")
			return
		}
		f.joined[room][u] = true
		reply(w, 200, map[string]string{"room_id": room})
	})
	mux.HandleFunc("PUT /_matrix/client/v3/rooms/{room}/send/{type}/{txn}", func(w http.ResponseWriter, r *http.Request) {
		u, ok := f.user(r)
		room := r.PathValue("room")
		var content struct {
			Bench *benchTag `json:"eimis.bench"`
		}
		var raw json.RawMessage
		_ = json.NewDecoder(r.Body).Decode(&raw)
		_ = json.Unmarshal(raw, &content)
		f.mu.Lock()
		defer f.mu.Unlock()
		if !ok || !f.joined[room][u] {
			fail(w, 403, "M_FORBIDDEN")
			return
		}
		key := u + "/" + r.PathValue("txn")
		if id, seen := f.txns[key]; seen {
			reply(w, 200, map[string]string{"event_id": id})
			return
		}
		ev := fakeEvent{room: room, id: f.next("$e"), sender: u, typ: r.PathValue("type"), content: raw, seq: -1}
		if content.Bench != nil {
			ev.seq = content.Bench.Seq
		}
		f.txns[key] = ev.id
		f.sends++
		f.appendEvent(ev)
		reply(w, 200, map[string]string{"event_id": ev.id})
	})
	mux.HandleFunc("GET /_matrix/client/v3/sync", f.sync)
	mux.HandleFunc("GET /_matrix/client/v3/rooms/{room}/messages", func(w http.ResponseWriter, r *http.Request) {
		u, _ := f.user(r)
		room := r.PathValue("room")
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		f.mu.Lock()
		defer f.mu.Unlock()
		chunk := []any{}
		end := ""
		for i := min(from, len(f.events)) - 1; i >= 0 && len(chunk) < limit; i-- {
			if ev := &f.events[i]; ev.room == room && f.visible(u, ev) {
				chunk = append(chunk, ev.json())
				end = strconv.Itoa(i)
			}
		}
		reply(w, 200, map[string]any{"chunk": chunk, "start": strconv.Itoa(from), "end": end})
	})
	return mux
}

func (f *fakeHS) sync(w http.ResponseWriter, r *http.Request) {
	u, ok := f.user(r)
	if !ok {
		fail(w, 401, "M_UNKNOWN_TOKEN")
		return
	}
	q := r.URL.Query()
	since, initial := 0, q.Get("since") == ""
	if !initial {
		since, _ = strconv.Atoi(q.Get("since"))
	}
	timeoutMs, _ := strconv.Atoi(q.Get("timeout"))
	deadline := time.Now().Add(time.Duration(timeoutMs) * time.Millisecond)
	for {
		f.mu.Lock()
		held := !initial && f.sends < f.holdSyncUntil
		type roomTL struct {
			events []map[string]any
			pos    []int
		}
		rooms := map[string]*roomTL{}
		n := 0
		for room, members := range f.joined {
			if members[u] {
				rooms[room] = &roomTL{}
			}
		}
		// An initial sync shows recent history; an incremental one
		// what happened since the token.
		start := since
		if initial {
			start = 0
		}
		for i := start; i < len(f.events); i++ {
			ev := &f.events[i]
			tl := rooms[ev.room]
			if tl == nil || !f.visible(u, ev) {
				continue
			}
			copies := 1
			if ev.seq >= 0 && f.dup != nil && f.dup(u, ev.seq) {
				copies = 2
			}
			for range copies {
				tl.events = append(tl.events, ev.json())
				tl.pos = append(tl.pos, i)
				n++
			}
		}
		if initial || (!held && (n > 0 || !time.Now().Before(deadline))) {
			join := map[string]any{}
			for room, tl := range rooms {
				limited, prev := false, ""
				if k := len(tl.events); f.timelineLimit > 0 && k > f.timelineLimit {
					limited = true
					tl.events, tl.pos = tl.events[k-f.timelineLimit:], tl.pos[k-f.timelineLimit:]
				}
				if len(tl.pos) > 0 {
					prev = strconv.Itoa(tl.pos[0])
				}
				if tl.events == nil {
					tl.events = []map[string]any{}
				}
				join[room] = map[string]any{"timeline": map[string]any{"events": tl.events, "limited": limited, "prev_batch": prev}}
			}
			next := len(f.events)
			f.mu.Unlock()
			reply(w, 200, map[string]any{"next_batch": strconv.Itoa(next), "rooms": map[string]any{"join": join}})
			return
		}
		wake := f.wake
		f.mu.Unlock()
		wait := time.Until(deadline)
		if held {
			wait = time.Hour
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-wake:
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		}
		timer.Stop()
	}
}

func (f *fakeHS) count(fn func() int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn()
}

func (f *fakeHS) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("fakeHS{users: %d, events: %d, sends: %d}", len(f.users), len(f.events), f.sends)
}
