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

	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/ratelimit"
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
	if e := createRoomBody.Decode(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	if !a.limitCreateRoom(w, r, s, len(req.Invite)) {
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
		var e *mautrix.RespError
		if alias, e = a.aliasFromName(req.RoomAliasName); e != nil {
			writeErr(w, *e)
			return
		}
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
		Creator: s.UserID, CreatorDisplayName: safeDisplayName(acc.DisplayName), Version: id.RoomVersion(req.RoomVersion),
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
	if hs != a.cfg.ServerName && a.federation() != nil {
		return nil // the federation side checks the remote invitee
	}
	if hs != a.cfg.ServerName {
		a.refuse(r.Context(), door.Refusal{Code: string(policy.ForeignServer), Actor: actorOf(r), Action: actionOf(r),
			RoomID: r.PathValue("roomId"), Target: string(u)})
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
	if !a.limit(w, r, s, ratelimit.Invite, 1, door.Refusal{Action: "room.invite", RoomID: r.PathValue("roomId"), Target: req.UserID}) {
		return
	}
	if e := a.checkInvitee(r, id.UserID(req.UserID)); e != nil {
		writeErr(w, *e)
		return
	}
	if a.inviteRemote(w, r, s, id.UserID(req.UserID), req.Reason) {
		return
	}
	a.member(w, r, s, id.RoomID(r.PathValue("roomId")), id.UserID(req.UserID), "invite", req.Reason)
}

func (a *API) joinRoom(w http.ResponseWriter, r *http.Request, s identity.Session) {
	target := r.PathValue("roomId")
	if target == "" {
		target = r.PathValue("roomIdOrAlias")
	}
	if !a.limit(w, r, s, ratelimit.Join, 1, door.Refusal{Action: "room.join", RoomID: target}) {
		return
	}
	if a.joinRemote(w, r, s, target) {
		return
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
	if a.leaveRemote(w, r, s) {
		return
	}
	a.member(w, r, s, id.RoomID(r.PathValue("roomId")), s.UserID, "leave", body.Reason)
}

func (a *API) kick(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if req, ok := a.decodeTarget(w, r); ok && a.checkTarget(w, r, s, req, "join", "invite", "knock") {
		a.member(w, r, s, id.RoomID(r.PathValue("roomId")), id.UserID(req.UserID), "leave", req.Reason)
	}
}

// ban needs no target check: the spec lets a room ban someone who never
// joined.
func (a *API) ban(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if req, ok := a.decodeTarget(w, r); ok && validTarget(w, req) {
		a.member(w, r, s, id.RoomID(r.PathValue("roomId")), id.UserID(req.UserID), "ban", req.Reason)
	}
}

func (a *API) unban(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if req, ok := a.decodeTarget(w, r); ok && a.checkTarget(w, r, s, req, "ban") {
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
	action := "event.send"
	if redacts != "" {
		action = "event.redact"
	}
	if !a.limit(w, r, s, ratelimit.Message, 1, door.Refusal{Action: action, RoomID: r.PathValue("roomId")}) {
		return
	}
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
		sub.Txn = &store.TxnKey{UserID: string(s.UserID), DeviceID: string(s.DeviceID), Scope: txnScope(sub), TxnID: txnID}
	}
	res, err := a.rooms.Send(r.Context(), sub)
	if err != nil {
		a.roomsErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"event_id": res.EventID})
}

// txnScope is the request path a transaction ID is scoped to, as the spec
// says: the room and event type of a send, the room and target of a
// redaction. A txnId reused on another path is another request.
func txnScope(sub rooms.Submit) string {
	if sub.Redacts != "" {
		return "redact/" + string(sub.RoomID) + "/" + string(sub.Redacts)
	}
	return "send/" + string(sub.RoomID) + "/" + sub.Type
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

// view loads what the user may see of the path's room, answering 403
// itself when that is nothing.
func (a *API) view(w http.ResponseWriter, r *http.Request, s identity.Session) (*syncapi.View, bool) {
	v, err := a.sync.View(r.Context(), r.PathValue("roomId"), string(s.UserID))
	if err != nil {
		a.readErr(w, r, err)
		return nil, false
	}
	return v, true
}

// readErr answers a failed read: 404 for an event the user may not see
// (indistinguishable from one that does not exist), else as roomsErr.
func (a *API) readErr(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, syncapi.ErrEventNotVisible) {
		writeErr(w, mautrix.MNotFound.WithMessage("Event not found"))
		return
	}
	a.roomsErr(w, r, err)
}

// visibleState returns the room state the user may see: current for
// members and world-readable rooms, as of their departure for former
// members; with at (a sync or pagination token), as of that point.
func (a *API) visibleState(w http.ResponseWriter, r *http.Request, s identity.Session, at string) ([]store.Event, bool) {
	v, ok := a.view(w, r, s)
	if !ok {
		return nil, false
	}
	var state []store.Event
	var err error
	if at != "" {
		state, err = a.sync.StateAt(r.Context(), v, at)
	} else {
		state, err = a.sync.State(r.Context(), v)
	}
	if err != nil {
		a.readErr(w, r, err)
		return nil, false
	}
	return state, true
}

func (a *API) getState(w http.ResponseWriter, r *http.Request, s identity.Session) {
	state, ok := a.visibleState(w, r, s, "")
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
	v, ok := a.view(w, r, s)
	if !ok {
		return
	}
	ev, err := a.sync.StateEvent(r.Context(), v, r.PathValue("type"), r.PathValue("stateKey"))
	if err != nil {
		a.readErr(w, r, err)
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
	state, ok := a.visibleState(w, r, s, r.URL.Query().Get("at"))
	if !ok {
		return
	}
	want := r.URL.Query().Get("membership")
	notWant := r.URL.Query().Get("not_membership")
	evs := []store.Event{}
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
	state, ok := a.visibleState(w, r, s, "")
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

func (a *API) getEvent(w http.ResponseWriter, r *http.Request, s identity.Session) {
	v, ok := a.view(w, r, s)
	if !ok {
		return
	}
	ev, err := a.sync.Event(r.Context(), v, r.PathValue("eventId"))
	if err != nil {
		a.readErr(w, r, err)
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
	v, ok := a.view(w, r, s)
	if !ok {
		return
	}
	limit := 10
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeErr(w, mautrix.MInvalidParam.WithMessage("limit must be a non-negative integer"))
			return
		}
		limit = min(n, 100)
	}
	resp, err := a.sync.Context(r.Context(), v, r.PathValue("eventId"), limit)
	if err != nil {
		a.readErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// relations answers for the relations of an event the user may see; the
// hub does not index relations yet, so the chunk is empty (never another
// room's or a hidden event's).
func (a *API) relations(w http.ResponseWriter, r *http.Request, s identity.Session) {
	v, ok := a.view(w, r, s)
	if !ok {
		return
	}
	eventID, _, _ := strings.Cut(r.PathValue("rest"), "/")
	if _, err := a.sync.Event(r.Context(), v, eventID); err != nil {
		a.readErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"chunk": []any{}})
}

func (a *API) typing(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if r.PathValue("userId") != string(s.UserID) {
		a.forbid(w, r, policy.ActingForAnother, "typing.send", r.PathValue("userId"),
			mautrix.MForbidden.WithMessage("Cannot set typing for another user"))
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
	if typ != "m.read" && typ != "m.read.private" && typ != "m.fully_read" {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Unknown receipt type %q", typ))
		return
	}
	if !validEventID(r.PathValue("eventId")) {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Invalid event ID"))
		return
	}
	if err := a.mustBeJoined(r, roomID, s); err != nil {
		a.roomsErr(w, r, err)
		return
	}
	if typ == "m.fully_read" {
		a.fullyRead(w, r, s, roomID, r.PathValue("eventId"))
		return
	}
	if err := a.putReceipt(r, s, roomID, typ, r.PathValue("eventId")); err != nil {
		a.roomsErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// putReceipt stores a receipt; the caller has checked that the user is
// joined to the room.
func (a *API) putReceipt(r *http.Request, s identity.Session, roomID, typ, eventID string) error {
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
	var body map[string]any
	if e := decodeJSON(r, &body); e != nil {
		writeErr(w, *e)
		return
	}
	// Other keys (Element long sent "m.hidden": false) are ignored; the
	// markers themselves must be event IDs.
	req := map[string]string{}
	for _, typ := range []string{"m.fully_read", "m.read", "m.read.private"} {
		switch v := body[typ].(type) {
		case nil:
		case string:
			if v == "" {
				break
			}
			if !validEventID(v) {
				writeErr(w, mautrix.MInvalidParam.WithMessage("%s must be an event ID", typ))
				return
			}
			req[typ] = v
		default:
			writeErr(w, mautrix.MBadJSON.WithMessage("%s must be an event ID", typ))
			return
		}
	}
	roomID := r.PathValue("roomId")
	// Before anything is stored: the fully-read marker is account data,
	// which has no membership check of its own.
	if err := a.mustBeJoined(r, roomID, s); err != nil {
		a.roomsErr(w, r, err)
		return
	}
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

func (a *API) roomAliases(w http.ResponseWriter, r *http.Request, s identity.Session) {
	state, ok := a.visibleState(w, r, s, "")
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
