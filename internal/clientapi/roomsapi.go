package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/canonjson"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/syncapi"
)

type createRoomRequest struct {
	Visibility                string             `json:"visibility"`
	RoomAliasName             string             `json:"room_alias_name"`
	Name                      string             `json:"name"`
	Topic                     string             `json:"topic"`
	Invite                    []string           `json:"invite"`
	RoomVersion               string             `json:"room_version"`
	CreationContent           json.RawMessage    `json:"creation_content"`
	InitialState              []rooms.StateEvent `json:"initial_state"`
	Preset                    string             `json:"preset"`
	IsDirect                  bool               `json:"is_direct"`
	PowerLevelContentOverride json.RawMessage    `json:"power_level_content_override"`
}

func (a *API) createRoom(w http.ResponseWriter, r *http.Request, s identity.Session) {
	var req createRoomRequest
	// Everything in a createRoom body may end up in a signed event. Event
	// content sits 3 levels down (initial_state, its entry, content), so
	// it keeps the depth it would have on its own.
	if e := readBody(r, &req, canonjson.Rules{MaxDepth: canonjson.MaxDepth + 3}.Check); e != nil {
		writeErr(w, *e)
		return
	}
	invites := make([]id.UserID, 0, len(req.Invite))
	for _, u := range req.Invite {
		if e := a.checkInvitee(r, id.UserID(u)); e != nil {
			writeErr(w, *e)
			return
		}
		invites = append(invites, id.UserID(u))
	}
	preset := req.Preset
	if preset == "" {
		preset = rooms.PresetPrivateChat
		if req.Visibility == "public" {
			preset = rooms.PresetPublicChat
		} else if req.IsDirect {
			preset = rooms.PresetTrustedPrivateChat
		}
	}
	var alias id.RoomAlias
	if req.RoomAliasName != "" {
		alias = id.NewRoomAlias(req.RoomAliasName, a.cfg.ServerName)
		if _, err := a.st.ResolveAlias(r.Context(), string(alias)); err == nil {
			writeErr(w, mautrix.MRoomInUse.WithMessage("Room alias already taken"))
			return
		}
	}
	acc, err := a.st.GetAccount(r.Context(), s.UserID.Localpart())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	res, err := a.rooms.CreateRoom(r.Context(), rooms.CreateRequest{
		Creator: s.UserID, CreatorDisplayName: acc.DisplayName, Version: id.RoomVersion(req.RoomVersion),
		Preset: preset, Name: req.Name, Topic: req.Topic, Alias: alias, Invite: invites, IsDirect: req.IsDirect,
		InitialState: req.InitialState, CreationContent: req.CreationContent, PowerLevelOverride: req.PowerLevelContentOverride,
	})
	if err != nil {
		a.roomsErr(w, r, err)
		return
	}
	if alias != "" {
		if err := a.st.PutAlias(r.Context(), string(alias), string(res.RoomID), string(s.UserID)); err != nil {
			a.log.Warn("alias not stored", "room", res.RoomID, errclass.Attr(err))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": res.RoomID})
}

// checkInvitee refuses invites the hub cannot deliver: remote users
// (federation comes later) and local users that do not exist.
func (a *API) checkInvitee(r *http.Request, u id.UserID) *mautrix.RespError {
	lp, hs, err := u.Parse()
	if err != nil || lp == "" {
		e := mautrix.MInvalidParam.WithMessage("Invalid user ID %q", u)
		return &e
	}
	if hs != a.cfg.ServerName {
		e := mautrix.MForbidden.WithMessage("Federation with %s is not enabled on this hub", hs)
		return &e
	}
	if a.trust.Policy != nil {
		// The trust space's answer first: "not in the directory" tells the
		// inviter more than "no such user".
		if ref, ok := policy.AsRefusal(a.trust.Policy.CheckUser(u)); ok {
			a.audit(r, AuditEvent{Actor: actorOf(r), Action: actionOf(r), RoomID: r.PathValue("roomId"), Target: string(u), Reason: string(ref.Code)})
			e := forbidden(ref)
			return &e
		}
	}
	if _, err := a.st.GetAccount(r.Context(), lp); errors.Is(err, store.ErrNotFound) {
		e := mautrix.MNotFound.WithMessage("User %s does not exist", u)
		return &e
	}
	return nil
}

func (a *API) member(w http.ResponseWriter, r *http.Request, s identity.Session, roomID id.RoomID, target id.UserID, membership, reason string) {
	var acc *store.Account
	if membership == "join" {
		var err error
		if acc, err = a.st.GetAccount(r.Context(), s.UserID.Localpart()); err != nil {
			a.internal(w, r, err)
			return
		}
	}
	content, _ := json.Marshal(memberContent(membership, acc, reason))
	sk := string(target)
	res, err := a.rooms.Send(r.Context(), rooms.Submit{RoomID: roomID, Sender: s.UserID, Type: "m.room.member", StateKey: &sk, Content: content})
	if err != nil {
		a.roomsErr(w, r, err)
		return
	}
	if membership == "join" {
		writeJSON(w, http.StatusOK, map[string]any{"room_id": res.RoomID})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

type targetRequest struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

func (a *API) decodeTarget(w http.ResponseWriter, r *http.Request) (targetRequest, bool) {
	var req targetRequest
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return req, false
	}
	if req.UserID == "" {
		writeErr(w, MMissingParam.WithMessage("user_id is required"))
		return req, false
	}
	return req, true
}

func (a *API) invite(w http.ResponseWriter, r *http.Request, s identity.Session) {
	req, ok := a.decodeTarget(w, r)
	if !ok {
		return
	}
	if e := a.checkInvitee(r, id.UserID(req.UserID)); e != nil {
		writeErr(w, *e)
		return
	}
	a.member(w, r, s, id.RoomID(r.PathValue("roomId")), id.UserID(req.UserID), "invite", req.Reason)
}

func (a *API) joinRoom(w http.ResponseWriter, r *http.Request, s identity.Session) {
	target := r.PathValue("roomId")
	if target == "" {
		target = r.PathValue("roomIdOrAlias")
	}
	if strings.HasPrefix(target, "#") {
		roomID, err := a.st.ResolveAlias(r.Context(), target)
		if errors.Is(err, store.ErrNotFound) {
			writeErr(w, mautrix.MNotFound.WithMessage("Room alias %s not found", target))
			return
		} else if err != nil {
			a.internal(w, r, err)
			return
		}
		target = roomID
	} else if !strings.HasPrefix(target, "!") {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Not a room ID or alias"))
		return
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if e := decodeJSON(r, &body); e != nil {
		writeErr(w, *e)
		return
	}
	a.member(w, r, s, id.RoomID(target), s.UserID, "join", body.Reason)
}

func (a *API) leave(w http.ResponseWriter, r *http.Request, s identity.Session) {
	var body struct {
		Reason string `json:"reason"`
	}
	if e := decodeJSON(r, &body); e != nil {
		writeErr(w, *e)
		return
	}
	a.member(w, r, s, id.RoomID(r.PathValue("roomId")), s.UserID, "leave", body.Reason)
}

func (a *API) kick(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if req, ok := a.decodeTarget(w, r); ok {
		a.member(w, r, s, id.RoomID(r.PathValue("roomId")), id.UserID(req.UserID), "leave", req.Reason)
	}
}

func (a *API) ban(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if req, ok := a.decodeTarget(w, r); ok {
		a.member(w, r, s, id.RoomID(r.PathValue("roomId")), id.UserID(req.UserID), "ban", req.Reason)
	}
}

func (a *API) unban(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if req, ok := a.decodeTarget(w, r); ok {
		a.member(w, r, s, id.RoomID(r.PathValue("roomId")), id.UserID(req.UserID), "leave", req.Reason)
	}
}

func (a *API) send(w http.ResponseWriter, r *http.Request, s identity.Session) {
	a.sendEvent(w, r, s, r.PathValue("type"), nil, r.PathValue("txnId"), "")
}

func (a *API) putState(w http.ResponseWriter, r *http.Request, s identity.Session) {
	sk := r.PathValue("stateKey")
	a.sendEvent(w, r, s, r.PathValue("type"), &sk, "", "")
}

func (a *API) redact(w http.ResponseWriter, r *http.Request, s identity.Session) {
	a.sendEvent(w, r, s, "m.room.redaction", nil, r.PathValue("txnId"), id.EventID(r.PathValue("eventId")))
}

func (a *API) sendEvent(w http.ResponseWriter, r *http.Request, s identity.Session, typ string, stateKey *string, txnID string, redacts id.EventID) {
	var content map[string]any
	if e := decodeContent(r, &content); e != nil {
		writeErr(w, *e)
		return
	}
	if redacts != "" {
		// Room v11 moved `redacts` into content; keeping it in both places
		// serves clients of every version.
		content["redacts"] = redacts
	}
	raw, err := json.Marshal(content)
	if err != nil {
		writeErr(w, mautrix.MBadJSON.WithMessage("Content cannot be encoded"))
		return
	}
	if len(raw) > rooms.MaxEventBytes {
		writeErr(w, mautrix.MTooLarge.WithMessage("Event content too large"))
		return
	}
	sub := rooms.Submit{RoomID: id.RoomID(r.PathValue("roomId")), Sender: s.UserID, Type: typ, StateKey: stateKey, Content: raw, Redacts: redacts}
	if txnID != "" {
		sub.Txn = &store.TxnKey{UserID: string(s.UserID), DeviceID: string(s.DeviceID), TxnID: txnID}
	}
	res, err := a.rooms.Send(r.Context(), sub)
	if err != nil {
		a.roomsErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"event_id": res.EventID})
}

func (a *API) syncHandler(w http.ResponseWriter, r *http.Request, s identity.Session) {
	q := r.URL.Query()
	req := syncapi.Request{UserID: string(s.UserID), Since: q.Get("since"), FullState: q.Get("full_state") == "true"}
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			writeErr(w, mautrix.MInvalidParam.WithMessage("timeout must be a non-negative integer"))
			return
		}
		req.Timeout = time.Duration(ms) * time.Millisecond
	}
	if f := q.Get("filter"); f != "" {
		limit, e := a.timelineLimit(r, s, f)
		if e != nil {
			writeErr(w, *e)
			return
		}
		req.TimelineLimit = limit
	}
	resp, err := a.sync.Sync(r.Context(), req)
	if err != nil {
		a.roomsErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// timelineLimit reads room.timeline.limit from an inline or stored filter.
func (a *API) timelineLimit(r *http.Request, s identity.Session, f string) (int, *mautrix.RespError) {
	if strings.HasPrefix(strings.TrimSpace(f), "{") {
		return parseTimelineLimit([]byte(f))
	}
	key := [2]string{string(s.UserID), f}
	a.filterMu.Lock()
	limit, ok := a.filters[key]
	a.filterMu.Unlock()
	if ok {
		return limit, nil
	}
	stored, err := a.st.GetFilter(r.Context(), string(s.UserID), f)
	if err != nil {
		e := mautrix.MInvalidParam.WithMessage("Unknown filter %q", f)
		return 0, &e
	}
	limit, e := parseTimelineLimit(stored)
	if e != nil {
		return 0, e
	}
	a.filterMu.Lock()
	if len(a.filters) >= 100_000 {
		clear(a.filters) // bounded; entries are cheap to reload
	}
	a.filters[key] = limit
	a.filterMu.Unlock()
	return limit, nil
}

func parseTimelineLimit(raw []byte) (int, *mautrix.RespError) {
	var filter struct {
		Room struct {
			Timeline struct {
				Limit int `json:"limit"`
			} `json:"timeline"`
		} `json:"room"`
	}
	if err := json.Unmarshal(raw, &filter); err != nil {
		e := mautrix.MBadJSON.WithMessage("Malformed filter: %s", err.Error())
		return 0, &e
	}
	return min(filter.Room.Timeline.Limit, 1000), nil
}

func (a *API) joinedRooms(w http.ResponseWriter, r *http.Request, s identity.Session) {
	mems, err := a.st.UserMemberships(r.Context(), string(s.UserID))
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := []string{}
	for _, m := range mems {
		if m.Membership == "join" {
			out = append(out, m.RoomID)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"joined_rooms": out})
}

func (a *API) messages(w http.ResponseWriter, r *http.Request, s identity.Session) {
	q := r.URL.Query()
	limit := 10
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeErr(w, mautrix.MInvalidParam.WithMessage("limit must be a non-negative integer"))
			return
		}
		limit = n
	}
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		writeErr(w, mautrix.MInvalidParam.WithMessage("dir must be b or f"))
		return
	}
	resp, err := a.sync.Messages(r.Context(), string(s.UserID), r.PathValue("roomId"), q.Get("from"), dir == "b", limit)
	if err != nil {
		a.roomsErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// visibleState returns the room's current state if the user may see it.
func (a *API) visibleState(w http.ResponseWriter, r *http.Request, s identity.Session) ([]store.Event, bool) {
	roomID := r.PathValue("roomId")
	if _, err := a.sync.Visibility(r.Context(), roomID, string(s.UserID)); err != nil {
		a.roomsErr(w, r, err)
		return nil, false
	}
	state, err := a.st.CurrentState(r.Context(), roomID)
	if err != nil {
		a.internal(w, r, err)
		return nil, false
	}
	return state, true
}

func (a *API) getState(w http.ResponseWriter, r *http.Request, s identity.Session) {
	state, ok := a.visibleState(w, r, s)
	if !ok {
		return
	}
	ces, err := rooms.ToClientEvents(state, true)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ces)
}

func (a *API) getStateEvent(w http.ResponseWriter, r *http.Request, s identity.Session) {
	roomID := r.PathValue("roomId")
	if _, err := a.sync.Visibility(r.Context(), roomID, string(s.UserID)); err != nil {
		a.roomsErr(w, r, err)
		return
	}
	ev, err := a.st.CurrentStateEvent(r.Context(), roomID, r.PathValue("type"), r.PathValue("stateKey"))
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("Event not found"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	ce, err := rooms.ToClientEvent(*ev, true)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if r.URL.Query().Get("format") == "event" {
		writeJSON(w, http.StatusOK, ce)
		return
	}
	writeJSON(w, http.StatusOK, ce.Content)
}

func (a *API) members(w http.ResponseWriter, r *http.Request, s identity.Session) {
	state, ok := a.visibleState(w, r, s)
	if !ok {
		return
	}
	want := r.URL.Query().Get("membership")
	notWant := r.URL.Query().Get("not_membership")
	var evs []store.Event
	for _, e := range state {
		if e.Type != "m.room.member" || (want != "" && e.Membership != want) || (notWant != "" && e.Membership == notWant) {
			continue
		}
		evs = append(evs, e)
	}
	ces, err := rooms.ToClientEvents(evs, true)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"chunk": ces})
}

func (a *API) joinedMembers(w http.ResponseWriter, r *http.Request, s identity.Session) {
	state, ok := a.visibleState(w, r, s)
	if !ok {
		return
	}
	joined := map[string]any{}
	for _, e := range state {
		if e.Type != "m.room.member" || e.Membership != "join" || e.StateKey == nil {
			continue
		}
		ce, err := rooms.ToClientEvent(e, false)
		if err != nil {
			a.internal(w, r, err)
			return
		}
		var c struct {
			DisplayName string `json:"displayname"`
			AvatarURL   string `json:"avatar_url"`
		}
		_ = json.Unmarshal(ce.Content, &c)
		joined[*e.StateKey] = map[string]any{"display_name": c.DisplayName, "avatar_url": c.AvatarURL}
	}
	writeJSON(w, http.StatusOK, map[string]any{"joined": joined})
}

// visibleEvent loads an event the user may see.
func (a *API) visibleEvent(w http.ResponseWriter, r *http.Request, s identity.Session) (*store.Event, bool) {
	roomID := r.PathValue("roomId")
	upto, err := a.sync.Visibility(r.Context(), roomID, string(s.UserID))
	if err != nil {
		a.roomsErr(w, r, err)
		return nil, false
	}
	ev, err := a.st.EventByID(r.Context(), r.PathValue("eventId"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (ev.RoomID != roomID || ev.Pos > upto)) {
		writeErr(w, mautrix.MNotFound.WithMessage("Event not found"))
		return nil, false
	} else if err != nil {
		a.internal(w, r, err)
		return nil, false
	}
	return ev, true
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request, s identity.Session) {
	ev, ok := a.visibleEvent(w, r, s)
	if !ok {
		return
	}
	ce, err := rooms.ToClientEvent(*ev, true)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ce)
}

func (a *API) eventContext(w http.ResponseWriter, r *http.Request, s identity.Session) {
	ev, ok := a.visibleEvent(w, r, s)
	if !ok {
		return
	}
	limit := 10
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l >= 0 {
		limit = min(l, 100)
	}
	before, err := a.sync.Messages(r.Context(), string(s.UserID), ev.RoomID, "s"+strconv.FormatInt(ev.Pos-1, 10), true, limit/2+1)
	if err != nil {
		a.roomsErr(w, r, err)
		return
	}
	after, err := a.sync.Messages(r.Context(), string(s.UserID), ev.RoomID, "s"+strconv.FormatInt(ev.Pos, 10), false, limit/2+1)
	if err != nil {
		a.roomsErr(w, r, err)
		return
	}
	ce, err := rooms.ToClientEvent(*ev, true)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	state, err := a.st.CurrentState(r.Context(), ev.RoomID)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	ces, err := rooms.ToClientEvents(state, true)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	end := after.End
	if end == "" {
		end = after.Start
	}
	startTok := before.End
	if startTok == "" {
		startTok = "s0"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"event": ce, "events_before": before.Chunk, "events_after": after.Chunk,
		"start": startTok, "end": end, "state": ces,
	})
}

func (a *API) typing(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if r.PathValue("userId") != string(s.UserID) {
		writeErr(w, mautrix.MForbidden.WithMessage("Cannot set typing for another user"))
		return
	}
	var req struct {
		Typing  bool  `json:"typing"`
		Timeout int64 `json:"timeout"`
	}
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	roomID := r.PathValue("roomId")
	if err := a.mustBeJoined(r, roomID, s); err != nil {
		a.roomsErr(w, r, err)
		return
	}
	if req.Timeout <= 0 {
		req.Timeout = 30000
	}
	if err := a.sync.SetTyping(roomID, string(s.UserID), req.Typing, time.Duration(req.Timeout)*time.Millisecond); err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) mustBeJoined(r *http.Request, roomID string, s identity.Session) error {
	ev, err := a.st.CurrentStateEvent(r.Context(), roomID, "m.room.member", string(s.UserID))
	if errors.Is(err, store.ErrNotFound) || (err == nil && ev.Membership != "join") {
		return syncapi.ErrNotVisible
	}
	return err
}

func (a *API) receipt(w http.ResponseWriter, r *http.Request, s identity.Session) {
	var body map[string]any
	if e := decodeJSON(r, &body); e != nil {
		writeErr(w, *e)
		return
	}
	typ := r.PathValue("receiptType")
	roomID := r.PathValue("roomId")
	if typ == "m.fully_read" {
		a.fullyRead(w, r, s, roomID, r.PathValue("eventId"))
		return
	}
	if typ != "m.read" && typ != "m.read.private" {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Unknown receipt type %q", typ))
		return
	}
	if err := a.putReceipt(r, s, roomID, typ, r.PathValue("eventId")); err != nil {
		a.roomsErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) putReceipt(r *http.Request, s identity.Session, roomID, typ, eventID string) error {
	if err := a.mustBeJoined(r, roomID, s); err != nil {
		return err
	}
	if _, err := a.st.PutReceipt(r.Context(), store.Receipt{
		RoomID: roomID, UserID: string(s.UserID), Type: typ, EventID: eventID, TS: time.Now().UnixMilli(),
	}); err != nil {
		return err
	}
	a.sync.Wake(roomID, "")
	return nil
}

func (a *API) fullyRead(w http.ResponseWriter, r *http.Request, s identity.Session, roomID, eventID string) {
	raw, _ := json.Marshal(map[string]string{"event_id": eventID})
	a.setAccountData(w, r, s, roomID, "m.fully_read", raw)
}

func (a *API) readMarkers(w http.ResponseWriter, r *http.Request, s identity.Session) {
	var req map[string]string
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	roomID := r.PathValue("roomId")
	for _, typ := range []string{"m.read", "m.read.private"} {
		if ev := req[typ]; ev != "" {
			if err := a.putReceipt(r, s, roomID, typ, ev); err != nil {
				a.roomsErr(w, r, err)
				return
			}
		}
	}
	if ev := req["m.fully_read"]; ev != "" {
		a.fullyRead(w, r, s, roomID, ev)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) getAlias(w http.ResponseWriter, r *http.Request) {
	roomID, err := a.st.ResolveAlias(r.Context(), r.PathValue("alias"))
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("Room alias not found"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": roomID, "servers": []string{a.cfg.ServerName}})
}

func (a *API) putAlias(w http.ResponseWriter, r *http.Request, s identity.Session) {
	var req struct {
		RoomID string `json:"room_id"`
	}
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	alias := id.RoomAlias(r.PathValue("alias"))
	if _, hs, _ := strings.Cut(string(alias), ":"); hs != a.cfg.ServerName {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Alias must be on this server"))
		return
	}
	if err := a.mustBeJoined(r, req.RoomID, s); err != nil {
		a.roomsErr(w, r, err)
		return
	}
	err := a.st.PutAlias(r.Context(), string(alias), req.RoomID, string(s.UserID))
	if errors.Is(err, store.ErrExists) {
		writeErr(w, mautrix.MUnknown.WithStatus(http.StatusConflict).WithMessage("Room alias already exists"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !s.Admin {
		writeErr(w, mautrix.MForbidden.WithMessage("Only server admins can delete aliases"))
		return
	}
	if err := a.st.DeleteAlias(r.Context(), r.PathValue("alias")); err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) roomAliases(w http.ResponseWriter, r *http.Request, s identity.Session) {
	state, ok := a.visibleState(w, r, s)
	if !ok {
		return
	}
	aliases := []string{}
	for _, e := range state {
		if e.Type == "m.room.canonical_alias" {
			ce, err := rooms.ToClientEvent(e, false)
			if err == nil {
				var c struct {
					Alias string `json:"alias"`
				}
				if json.Unmarshal(ce.Content, &c) == nil && c.Alias != "" {
					aliases = append(aliases, c.Alias)
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"aliases": aliases})
}
