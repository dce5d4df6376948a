package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

// Reading a room: every answer is only about a room the origin's server
// is in now (a user of it joined in current state), so a server that left
// or was never invited learns nothing, not even whether an event exists.

// maxAuthChain bounds an auth chain walk.
const maxAuthChain = 10000

// serverInRoom reports whether server has a joined user in roomID.
func (s *Server) serverInRoom(ctx context.Context, roomID, server string) bool {
	ms, err := s.cfg.Store.RoomMembers(ctx, roomID, "join")
	if err != nil {
		return false
	}
	for _, m := range ms {
		if id.UserID(m.UserID).Homeserver() == server {
			return true
		}
	}
	return false
}

func (s *Server) userInRoom(ctx context.Context, roomID, user string) bool {
	ev, err := s.cfg.Store.CurrentStateEvent(ctx, roomID, "m.room.member", user)
	return err == nil && ev.Membership == "join"
}

// ServersInRoom are the servers with a joined user in roomID, this one
// excluded (where the sender delivers the room's events).
func (s *Server) ServersInRoom(ctx context.Context, roomID string) ([]string, error) {
	ms, err := s.cfg.Store.RoomMembers(ctx, roomID, "join")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		hs := id.UserID(m.UserID).Homeserver()
		if hs != "" && hs != s.name && !seen[hs] {
			seen[hs] = true
			out = append(out, hs)
		}
	}
	sort.Strings(out)
	return out, nil
}

// roomForOrigin answers 403 unless the origin's server is in the room.
func (s *Server) roomForOrigin(w http.ResponseWriter, r *http.Request, roomID string) (string, bool) {
	o, ok := origin(w, r)
	if !ok {
		return "", false
	}
	if !s.serverInRoom(r.Context(), roomID, o) {
		s.count("read_not_in_room")
		writeErr(w, mautrix.MForbidden.WithMessage("Your server is not in the room"))
		return "", false
	}
	return o, true
}

// servable reports whether a stored event may be given to a peer: never a
// rejected one.
func servable(e store.Event) bool { return e.Flags&store.FlagRejected == 0 }

func (s *Server) txnEnvelope(pdus []json.RawMessage) map[string]any {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	return map[string]any{"origin": s.name, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus}
}

// handleEvent is GET /event/{eventID}.
func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) {
	evs, err := s.cfg.Store.EventsByIDAny(r.Context(), []string{r.PathValue("eventID")})
	if err != nil {
		internal(s.log, w, err)
		return
	}
	if len(evs) == 0 || !servable(evs[0]) {
		if _, ok := origin(w, r); ok {
			writeErr(w, mautrix.MNotFound.WithMessage("Event not found"))
		}
		return
	}
	if _, ok := s.roomForOrigin(w, r, evs[0].RoomID); !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.txnEnvelope([]json.RawMessage{evs[0].JSON}))
}

// stateAt returns the state before eventID (the spec's "state at" an
// event, which excludes it) and the event's room.
func (s *Server) stateAt(ctx context.Context, roomID, eventID string) (store.StateMap, error) {
	evs, err := s.cfg.Store.EventsByIDAny(ctx, []string{eventID})
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 || evs[0].RoomID != roomID || !servable(evs[0]) || evs[0].StateBefore == 0 {
		return nil, store.ErrNotFound
	}
	return s.cfg.Store.StateGroup(ctx, evs[0].StateBefore)
}

// authChain walks the auth events of ids transitively: every event
// reached through auth_events (an event of ids is in it only when another
// one's auth events name it, as the state's create event is).
func (s *Server) authChain(ctx context.Context, ids []string) ([]store.Event, error) {
	seen := map[string]bool{}
	var frontier []string
	start, err := s.cfg.Store.EventsByIDAny(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, e := range start {
		for _, a := range gjson.GetBytes(e.JSON, "auth_events").Array() {
			if !seen[a.Str] {
				seen[a.Str] = true
				frontier = append(frontier, a.Str)
			}
		}
	}
	var out []store.Event
	for len(frontier) > 0 && len(out) < maxAuthChain {
		evs, err := s.cfg.Store.EventsByIDAny(ctx, frontier)
		if err != nil {
			return nil, err
		}
		frontier = nil
		for _, e := range evs {
			if !servable(e) {
				continue
			}
			out = append(out, e)
			for _, a := range gjson.GetBytes(e.JSON, "auth_events").Array() {
				if !seen[a.Str] {
					seen[a.Str] = true
					frontier = append(frontier, a.Str)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Depth < out[j].Depth })
	return out, nil
}

func contains(ss []string, v string) bool {
	for _, s := range ss {
		if s == v {
			return true
		}
	}
	return false
}

func stateIDs(m store.StateMap) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func (s *Server) stateRequest(w http.ResponseWriter, r *http.Request) (store.StateMap, []store.Event, bool) {
	roomID := r.PathValue("roomID")
	if _, ok := s.roomForOrigin(w, r, roomID); !ok {
		return nil, nil, false
	}
	state, err := s.stateAt(r.Context(), roomID, r.URL.Query().Get("event_id"))
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("Event not found"))
		return nil, nil, false
	} else if err != nil {
		internal(s.log, w, err)
		return nil, nil, false
	}
	chain, err := s.authChain(r.Context(), stateIDs(state))
	if err != nil {
		internal(s.log, w, err)
		return nil, nil, false
	}
	return state, chain, true
}

// handleStateIDs is GET /state_ids/{roomID}?event_id=.
func (s *Server) handleStateIDs(w http.ResponseWriter, r *http.Request) {
	state, chain, ok := s.stateRequest(w, r)
	if !ok {
		return
	}
	ids := make([]string, len(chain))
	for i, e := range chain {
		ids[i] = e.EventID
	}
	writeJSON(w, http.StatusOK, map[string]any{"pdu_ids": stateIDs(state), "auth_chain_ids": ids})
}

// handleState is GET /state/{roomID}?event_id=.
func (s *Server) handleState(w http.ResponseWriter, r *http.Request) {
	state, chain, ok := s.stateRequest(w, r)
	if !ok {
		return
	}
	evs, err := s.cfg.Store.EventsByIDAny(r.Context(), stateIDs(state))
	if err != nil {
		internal(s.log, w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pdus": jsonOf(evs), "auth_chain": jsonOf(chain)})
}

func jsonOf(evs []store.Event) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.JSON)
	}
	return out
}

// handleEventAuth is GET /event_auth/{roomID}/{eventID}.
func (s *Server) handleEventAuth(w http.ResponseWriter, r *http.Request) {
	roomID, eventID := r.PathValue("roomID"), r.PathValue("eventID")
	if _, ok := s.roomForOrigin(w, r, roomID); !ok {
		return
	}
	evs, err := s.cfg.Store.EventsByIDAny(r.Context(), []string{eventID})
	if err != nil {
		internal(s.log, w, err)
		return
	}
	if len(evs) == 0 || evs[0].RoomID != roomID || !servable(evs[0]) {
		writeErr(w, mautrix.MNotFound.WithMessage("Event not found"))
		return
	}
	chain, err := s.authChain(r.Context(), []string{eventID})
	if err != nil {
		internal(s.log, w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"auth_chain": jsonOf(chain)})
}

// walkBack walks prev_events back from start (included when include is
// set), breadth first, never past stop nor below minDepth, and returns up
// to limit events of the room's DAG (outliers and rejected events are
// neither returned nor walked through).
func (s *Server) walkBack(ctx context.Context, roomID string, start, stop []string, include bool, limit int, minDepth int64) ([]store.Event, error) {
	seen := map[string]bool{}
	for _, v := range stop {
		seen[v] = true
	}
	var frontier []string
	if include {
		frontier = start
	} else {
		evs, err := s.cfg.Store.EventsByIDAny(ctx, start)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if e.RoomID != roomID {
				continue
			}
			for _, p := range gjson.GetBytes(e.JSON, "prev_events").Array() {
				frontier = append(frontier, p.Str)
			}
		}
	}
	var out []store.Event
	for len(frontier) > 0 && len(out) < limit {
		var next []string
		var ids []string
		for _, v := range frontier {
			if !seen[v] {
				seen[v] = true
				ids = append(ids, v)
			}
		}
		evs, err := s.cfg.Store.EventsByIDAny(ctx, ids)
		if err != nil {
			return nil, err
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].Depth > evs[j].Depth })
		for _, e := range evs {
			if e.RoomID != roomID || e.Flags&(store.FlagOutlier|store.FlagRejected) != 0 || e.Depth < minDepth {
				continue
			}
			if len(out) == limit {
				break
			}
			out = append(out, e)
			for _, p := range gjson.GetBytes(e.JSON, "prev_events").Array() {
				next = append(next, p.Str)
			}
		}
		frontier = next
	}
	return out, nil
}

// handleBackfill is GET /backfill/{roomID}?v=…&limit=.
func (s *Server) handleBackfill(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("roomID")
	if _, ok := s.roomForOrigin(w, r, roomID); !ok {
		return
	}
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		writeErr(w, mautrix.MInvalidParam.WithMessage("limit must be a positive integer"))
		return
	}
	limit = min(limit, MaxMissingEvents)
	from := q["v"]
	if len(from) == 0 || len(from) > 20 {
		writeErr(w, mautrix.MInvalidParam.WithMessage("v must name 1 to 20 events"))
		return
	}
	evs, err := s.walkBack(r.Context(), roomID, from, nil, true, limit, 0)
	if err != nil {
		internal(s.log, w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.txnEnvelope(jsonOf(evs)))
}

// handleGetMissingEvents is POST /get_missing_events/{roomID}.
func (s *Server) handleGetMissingEvents(w http.ResponseWriter, r *http.Request) {
	roomID := r.PathValue("roomID")
	if _, ok := s.roomForOrigin(w, r, roomID); !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		s.count("gme_refused")
		writeErr(w, mautrix.MTooLarge.WithMessage("Request too large"))
		return
	}
	var req struct {
		EarliestEvents []string `json:"earliest_events"`
		LatestEvents   []string `json:"latest_events"`
		Limit          int      `json:"limit"`
		MinDepth       int64    `json:"min_depth"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeErr(w, mautrix.MNotJSON.WithMessage("Malformed request"))
		return
	}
	if len(req.LatestEvents) == 0 || len(req.LatestEvents) > 20 || len(req.EarliestEvents) > 100 || req.Limit < 0 {
		s.count("gme_refused")
		writeErr(w, mautrix.MInvalidParam.WithMessage("latest_events must name 1 to 20 events, earliest_events at most 100"))
		return
	}
	if req.Limit == 0 {
		req.Limit = 10
	}
	req.Limit = min(req.Limit, MaxMissingEvents)
	evs, err := s.walkBack(r.Context(), roomID, req.LatestEvents, req.EarliestEvents, false, req.Limit, req.MinDepth)
	if err != nil {
		internal(s.log, w, err)
		return
	}
	// Oldest first, as peers apply them.
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Depth < evs[j].Depth })
	writeJSON(w, http.StatusOK, map[string]any{"events": jsonOf(evs)})
}

// handleQueryProfile is GET /query/profile?user_id=&field=.
func (s *Server) handleQueryProfile(w http.ResponseWriter, r *http.Request) {
	if _, ok := origin(w, r); !ok {
		return
	}
	u := id.UserID(r.URL.Query().Get("user_id"))
	lp, hs, err := u.Parse()
	if err != nil || hs != s.name {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Not a user of this server"))
		return
	}
	acc, err := s.cfg.Store.GetAccount(r.Context(), lp)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("User not found"))
		return
	} else if err != nil {
		internal(s.log, w, err)
		return
	}
	out := map[string]any{}
	field := r.URL.Query().Get("field")
	if (field == "" || field == "displayname") && acc.DisplayName != "" {
		out["displayname"] = acc.DisplayName
	}
	if (field == "" || field == "avatar_url") && acc.AvatarURL != "" {
		out["avatar_url"] = acc.AvatarURL
	}
	writeJSON(w, http.StatusOK, out)
}

// handleQueryDirectory is GET /query/directory?room_alias=.
func (s *Server) handleQueryDirectory(w http.ResponseWriter, r *http.Request) {
	if _, ok := origin(w, r); !ok {
		return
	}
	alias := id.RoomAlias(r.URL.Query().Get("room_alias"))
	if aliasServer(alias) != s.name {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Not an alias of this server"))
		return
	}
	roomID, err := s.cfg.Store.ResolveAlias(r.Context(), string(alias))
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("Room alias not found"))
		return
	} else if err != nil {
		internal(s.log, w, err)
		return
	}
	servers, err := s.ServersInRoom(r.Context(), roomID)
	if err != nil {
		internal(s.log, w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": roomID, "servers": append([]string{s.name}, servers...)})
}

// aliasServer is the server part of #local:server ("" if malformed).
func aliasServer(a id.RoomAlias) string {
	s := string(a)
	if !strings.HasPrefix(s, "#") {
		return ""
	}
	if i := strings.IndexByte(s, ':'); i > 1 {
		return s[i+1:]
	}
	return ""
}
