package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// requestTimeout bounds one request's work in the hub.
const requestTimeout = 30 * time.Second

// handle runs one request and returns its result or refusal.
func (c *conn) handle(f Frame) (res any, e *Error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("bridge request panicked", "type", f.Type, "panic", p, "stack", string(debug.Stack()))
			res, e = nil, errf(CodeInternal, "", "")
		}
	}()
	ctx, cancel := context.WithTimeout(door.With(c.ctx, c.door()), requestTimeout)
	defer cancel()
	start := time.Now()
	if e := c.rateLimit(ctx, f); e != nil {
		c.log.Debug("bridge request refused", "type", f.Type, "code", e.Code)
		return nil, e
	}
	switch f.Type {
	case "bind":
		res, e = c.bind(ctx, f)
	case "unbind":
		res, e = c.unbind(ctx, f)
	case "create_room":
		res, e = c.createRoom(ctx, f)
	case "room_info":
		res, e = c.roomInfo(ctx, f)
	case "history":
		res, e = c.history(ctx, f)
	case "join", "invite", "leave":
		res, e = c.membership(ctx, f)
	case "send", "edit":
		res, e = c.sendMessage(ctx, f)
	case "read_receipt":
		res, e = c.readReceipt(ctx, f)
	case "typing":
		res, e = c.typing(ctx, f)
	case "directory_search":
		res, e = c.search(ctx, f)
	case "upload":
		res, e = c.upload(ctx, f)
	default:
		e = errf(CodeUnknownType, "/type", "")
	}
	if e != nil {
		c.refused(ctx, f, e)
		c.log.Debug("bridge request refused", "type", f.Type, "code", e.Code, "field", c.g.dec.SafeField(e.Field), "took", time.Since(start))
	} else {
		c.log.Debug("bridge request", "type", f.Type, "took", time.Since(start))
	}
	return res, e
}

// door is this connection's door: the bridge.
func (c *conn) door() door.Door {
	if c.bridge == nil {
		return door.Of(door.Bridge, "")
	}
	return door.Of(door.Bridge, c.bridge.ID)
}

// frameActions names the audit action of each request type, for its
// refusals.
var frameActions = map[string]string{
	"bind": audit.ActionBindingBind, "unbind": audit.ActionBindingUnbind, "create_room": "room.create", "room_info": "room.read", "history": "room.read",
	"join": "room.join", "invite": "room.invite", "leave": "room.leave", "send": "event.send", "edit": "event.send",
	"read_receipt": "receipt.send", "typing": "typing.send", "directory_search": "directory.search", "upload": "media.upload",
}

// refused records a refused request on the hub's refusal path: who it
// acted for, in which room, about whom. Metadata only: the frame's text
// fields are never read here.
func (c *conn) refused(ctx context.Context, f Frame, e *Error) {
	if notRefusals[e.Code] {
		return
	}
	var who struct {
		User    string `json:"user"`
		IDNat   string `json:"idnat"`
		RoomID  string `json:"room_id"`
		Invitee string `json:"invitee"`
	}
	_ = json.Unmarshal(f.Raw, &who)
	// Users are named by idNat or user ID in frames; the trail has IDs.
	asID := func(s string) string {
		if s == "" || strings.HasPrefix(s, "@") {
			return s
		}
		return string(id.NewUserID(s, c.g.cfg.ServerName))
	}
	actor, target := asID(who.User), asID(who.Invitee)
	if who.IDNat != "" {
		target = string(id.NewUserID(who.IDNat, c.g.cfg.ServerName))
	}
	if actor == "" && c.bridge != nil {
		// bind and unbind act for nobody yet: the operator asks.
		actor = "operator:" + c.bridge.OperatorID
	}
	action := frameActions[f.Type]
	if action == "" {
		action = "bridge.request"
	}
	c.g.cfg.Refusals.Refused(ctx, door.Refusal{Door: c.door(), Code: e.Code, Actor: actor, Action: action,
		RoomID: who.RoomID, Target: target, RequestID: f.ID})
}

func decodeReq[T any](f Frame) (T, *Error) {
	var v T
	if err := json.Unmarshal(f.Raw, &v); err != nil {
		// The schema passed, so this is a shape the structs do not
		// expect: a bug on the hub's side.
		return v, errf(CodeInternal, "", "")
	}
	return v, nil
}

// decodeActing decodes a request made for one of the bridge's users and
// checks the bridge binds that user: the start of most requests.
func decodeActing[T interface{ user() string }](c *conn, f Frame) (T, id.UserID, *Error) {
	r, e := decodeReq[T](f)
	if e != nil {
		return r, "", e
	}
	u, e := c.actor(r.user(), "/user")
	return r, u, e
}

// localUser turns an idNat or a user ID into this hub's user ID.
func (g *Gateway) localUser(s, field string) (id.UserID, *Error) {
	if !strings.HasPrefix(s, "@") {
		return id.NewUserID(s, g.cfg.ServerName), nil
	}
	u := id.UserID(s)
	_, hs, err := u.Parse()
	if err != nil {
		return "", errf(CodeInvalidField, field, "not a user ID")
	}
	if hs != g.cfg.ServerName {
		return "", refusalError(&policy.Refusal{Code: policy.ForeignServer, Subject: s}, field)
	}
	return u, nil
}

// actor is the bound user a request acts for.
func (c *conn) actor(s, field string) (id.UserID, *Error) {
	u, e := c.g.localUser(s, field)
	if e != nil {
		return "", e
	}
	if !c.isBound(u) {
		return "", errf(CodeNotBound, field, string(u)+": "+CodeNotBound.Message())
	}
	return u, nil
}

// refusalError carries a trust-space or allow-list refusal with its own
// code; nil when err is neither.
func refusalError(err error, field string) *Error {
	if r, ok := policy.AsRefusal(err); ok {
		return &Error{Code: string(r.Code), Message: r.Error(), Field: field}
	}
	if r, ok := operators.AsRefusal(err); ok {
		return &Error{Code: string(r.Code), Message: r.Error(), Field: field}
	}
	return nil
}

// roomsError maps the room server's errors; anything else is logged and
// answered as internal (or unavailable, for a timeout).
func (c *conn) roomsError(err error, field string) *Error {
	if e := refusalError(err, field); e != nil {
		return e
	}
	msg := err.Error()
	switch {
	case errors.Is(err, rooms.ErrForbidden):
		return errf(CodeForbidden, field, strings.TrimPrefix(msg, "forbidden: "))
	case errors.Is(err, rooms.ErrUnknownRoom):
		return errf(CodeUnknownRoom, "/room_id", "")
	case errors.Is(err, rooms.ErrUnknownEvent):
		return errf(CodeUnknownEvent, field, msg)
	case errors.Is(err, rooms.ErrTooLarge):
		return errf(CodeEventTooLarge, "", msg)
	case errors.Is(err, rooms.ErrBadEvent):
		return errf(CodeBadEvent, "", msg)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, rooms.ErrClosed):
		return errf(CodeUnavailable, "", "")
	}
	c.log.Error("bridge request failed", errclass.Attr(err))
	return errf(CodeInternal, "", "")
}

// ensureAccount creates a practitioner's account when they have none (no
// password: they log in through Pro Santé Connect, or only exist through
// bridges). The identity service asks the policy engine first.
func (c *conn) ensureAccount(ctx context.Context, u id.UserID, field string) *Error {
	lp := u.Localpart()
	if _, err := c.g.cfg.Store.GetAccount(ctx, lp); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		c.log.Error("account look-up", "user", u, "err", err)
		return errf(CodeUnavailable, "", "")
	}
	if _, _, err := directory.ParseIDNat(lp); err != nil {
		// Only practitioners get an account on first mention; service
		// accounts are registered by the hub's operators.
		return errf(CodeUnknownUser, field, string(u)+" has no account on this hub")
	}
	_, err := c.g.cfg.IDs.CreateAccount(ctx, lp, "", false)
	switch {
	case err == nil, errors.Is(err, identity.ErrUserExists):
		return nil
	case errors.Is(err, identity.ErrNotAdmitted):
		if e := refusalError(err, field); e != nil {
			return e
		}
		return errf(CodeForbidden, field, err.Error())
	}
	c.log.Error("create account", "user", u, "err", err)
	return errf(CodeInternal, "", "")
}

// consentFields are the request fields each consent refusal is about.
var consentFields = map[policy.Code]string{
	policy.LinkCodeInvalid: "/link_code", policy.LinkCodeAttempts: "/link_code",
	policy.PSCProofRequired: "/psc_proof", policy.PSCProofInvalid: "/psc_proof",
}

func (c *conn) bind(ctx context.Context, f Frame) (any, *Error) {
	r, e := decodeReq[bindReq](f)
	if e != nil {
		return nil, e
	}
	u := id.NewUserID(r.IDNat, c.g.cfg.ServerName)
	if err := c.g.cfg.Policy.CheckUser(u); err != nil {
		if e := refusalError(err, "/idnat"); e != nil {
			return nil, e
		}
		return nil, errf(CodeInternal, "", "")
	}
	// The practitioner's consent comes before anything is done for them,
	// their account included.
	grant, err := c.g.cfg.Consent.Bind(ctx, c.door(), u, consent.Evidence{LinkCode: r.LinkCode, PSCProof: r.PSCProof})
	if ref, ok := policy.AsRefusal(err); ok {
		return nil, &Error{Code: string(ref.Code), Message: ref.Error(), Field: consentFields[ref.Code]}
	}
	switch {
	case errors.Is(err, consent.ErrUnknownApp):
		// The bridge's record is gone: it was removed while connected.
		return nil, errf(CodeBridgeRevoked, "", "")
	case err != nil:
		c.log.Error("bind: consent", "user", u, "err", err)
		return nil, errf(CodeUnavailable, "", "")
	}
	if e := c.ensureAccount(ctx, u, "/idnat"); e != nil {
		return nil, e
	}
	if err := c.loadMemberships(ctx, u); err != nil {
		c.log.Error("bind: memberships", "user", u, "err", err)
		return nil, errf(CodeUnavailable, "", "")
	}
	c.mu.Lock()
	delete(c.revoked, u)
	c.mu.Unlock()
	if grant.Fresh {
		c.log.Info("user bound", "user", u, "proof", grant.Binding.Proof, "new", grant.Created)
	}
	res := bindResult{UserID: string(u), IDNat: r.IDNat, Rooms: []roomMembership{}}
	res.DisplayName, _ = c.g.cfg.Policy.DisplayName(u)
	mems, err := c.g.cfg.Store.UserMemberships(ctx, string(u))
	if err != nil {
		return nil, errf(CodeUnavailable, "", "")
	}
	for _, m := range mems {
		if visible(m.Membership) {
			res.Rooms = append(res.Rooms, roomMembership{RoomID: m.RoomID, Membership: m.Membership})
		}
	}
	return res, nil
}

func (c *conn) unbind(ctx context.Context, f Frame) (any, *Error) {
	r, e := decodeReq[bindReq](f)
	if e != nil {
		return nil, e
	}
	u := id.NewUserID(r.IDNat, c.g.cfg.ServerName)
	// Forgotten here first: the change the consent service announces
	// finds nothing left to revoke on this connection.
	c.unbindLocal(u)
	existed, err := c.g.cfg.Consent.Unbind(ctx, c.door(), u)
	if err != nil {
		c.log.Error("unbind", "user", u, "err", err)
		return nil, errf(CodeUnavailable, "", "")
	}
	if existed {
		c.log.Info("user unbound", "user", u)
	}
	return map[string]any{"unbound": existed}, nil
}

func (c *conn) createRoom(ctx context.Context, f Frame) (any, *Error) {
	r, creator, e := decodeActing[createRoomReq](c, f)
	if e != nil {
		return nil, e
	}
	invites := make([]id.UserID, 0, len(r.Invite))
	for i, s := range r.Invite {
		field := fmt.Sprintf("/invite/%d", i)
		u, e := c.g.localUser(s, field)
		if e != nil {
			return nil, e
		}
		if err := c.g.cfg.Policy.CheckUser(u); err != nil {
			if e := refusalError(err, field); e != nil {
				return nil, e
			}
		}
		if e := c.ensureAccount(ctx, u, field); e != nil {
			return nil, e
		}
		invites = append(invites, u)
	}
	preset := rooms.PresetPrivateChat
	if r.IsDirect {
		preset = rooms.PresetTrustedPrivateChat
	}
	name, _ := c.g.cfg.Policy.DisplayName(creator)
	res, err := c.g.cfg.Rooms.CreateRoom(ctx, rooms.CreateRequest{
		Creator: creator, CreatorDisplayName: name, Preset: preset, Name: r.Name, Topic: r.Topic,
		Invite: invites, IsDirect: r.IsDirect,
	})
	if err != nil {
		return nil, c.roomsError(err, "")
	}
	c.log.Info("room created by bridge", "user", creator, "room", res.RoomID, "invites", len(invites))
	return map[string]string{"room_id": string(res.RoomID)}, nil
}

func (c *conn) roomInfo(ctx context.Context, f Frame) (any, *Error) {
	r, u, e := decodeActing[roomReq](c, f)
	if e != nil {
		return nil, e
	}
	if e := c.mustBeIn(ctx, r.RoomID, u, visible); e != nil {
		return nil, e
	}
	state, err := c.g.cfg.Store.CurrentState(ctx, r.RoomID)
	if err != nil {
		return nil, errf(CodeUnavailable, "", "")
	}
	res := roomInfoResult{RoomID: r.RoomID, Members: []member{}}
	for _, ev := range state {
		ce, err := rooms.ToClientEvent(ev, false)
		if err != nil || ev.StateKey == nil {
			continue
		}
		var content struct {
			Name        string `json:"name"`
			Topic       string `json:"topic"`
			Membership  string `json:"membership"`
			DisplayName string `json:"displayname"`
		}
		_ = json.Unmarshal(ce.Content, &content)
		switch ev.Type {
		case "m.room.name":
			res.Name = content.Name
		case "m.room.topic":
			res.Topic = content.Topic
		case "m.room.member":
			res.Members = append(res.Members, member{UserID: *ev.StateKey, Membership: content.Membership, DisplayName: content.DisplayName})
		}
	}
	return res, nil
}

// history answers the latest events of a room that the user may see, as
// a Matrix client's /messages does, oldest first: the live feed only
// carries what happens while the user is a member, so an app that just
// joined asks here for what came before (history visibility applies).
func (c *conn) history(ctx context.Context, f Frame) (any, *Error) {
	r, u, e := decodeActing[roomReq](c, f)
	if e != nil {
		return nil, e
	}
	if c.g.cfg.History == nil {
		return nil, errf(CodeUnsupported, "", "")
	}
	limit := int(r.Limit)
	if limit <= 0 {
		limit = 20
	}
	evs, err := c.g.cfg.History.Recent(ctx, string(u), r.RoomID, limit)
	if err != nil {
		return nil, c.roomsError(err, "/room_id")
	}
	if evs == nil {
		evs = []rooms.ClientEvent{}
	}
	return map[string]any{"room_id": r.RoomID, "events": evs}, nil
}

// mustBeIn checks u's current membership of a room.
func (c *conn) mustBeIn(ctx context.Context, roomID string, u id.UserID, ok func(string) bool) *Error {
	ev, err := c.g.cfg.Store.CurrentStateEvent(ctx, roomID, "m.room.member", string(u))
	switch {
	case errors.Is(err, store.ErrNotFound):
		if _, err := c.g.cfg.Store.GetRoom(ctx, roomID); errors.Is(err, store.ErrNotFound) {
			return errf(CodeUnknownRoom, "/room_id", "")
		}
		return errf(CodeForbidden, "/room_id", string(u)+" is not in this room")
	case err != nil:
		return errf(CodeUnavailable, "", "")
	case !ok(ev.Membership):
		return errf(CodeForbidden, "/room_id", string(u)+" is not in this room")
	}
	return nil
}

func (c *conn) membership(ctx context.Context, f Frame) (any, *Error) {
	r, u, e := decodeActing[roomReq](c, f)
	if e != nil {
		return nil, e
	}
	target, content := u, map[string]any{}
	switch f.Type {
	case "join":
		content["membership"] = "join"
		if name, ok := c.g.cfg.Policy.DisplayName(u); ok {
			content["displayname"] = name
		}
	case "leave":
		content["membership"] = "leave"
	case "invite":
		if target, e = c.g.localUser(r.Invitee, "/invitee"); e != nil {
			return nil, e
		}
		if err := c.g.cfg.Policy.CheckUser(target); err != nil {
			if e := refusalError(err, "/invitee"); e != nil {
				return nil, e
			}
		}
		if e := c.ensureAccount(ctx, target, "/invitee"); e != nil {
			return nil, e
		}
		content["membership"] = "invite"
	}
	if r.Reason != "" {
		content["reason"] = r.Reason
	}
	raw, _ := json.Marshal(content)
	sk := string(target)
	res, err := c.g.cfg.Rooms.Send(ctx, rooms.Submit{
		RoomID: id.RoomID(r.RoomID), Sender: u, Type: "m.room.member", StateKey: &sk, Content: raw,
	})
	if err != nil {
		field := ""
		if f.Type == "invite" {
			field = "/invitee"
		}
		return nil, c.roomsError(err, field)
	}
	return map[string]string{"room_id": string(res.RoomID), "event_id": string(res.EventID)}, nil
}

func (c *conn) sendMessage(ctx context.Context, f Frame) (any, *Error) {
	r, u, e := decodeActing[sendReq](c, f)
	if e != nil {
		return nil, e
	}
	msgtype := r.MsgType
	if msgtype == "" {
		msgtype = "m.text"
	}
	content := map[string]any{"msgtype": msgtype, "body": r.Body}
	if r.Format != "" {
		content["format"], content["formatted_body"] = r.Format, r.FormattedBody
	}
	if f.Type == "edit" {
		if e := c.ownMessage(ctx, r.RoomID, r.EventID, u); e != nil {
			return nil, e
		}
		// Clients without edit support show the fallback body.
		content = map[string]any{
			"msgtype": msgtype, "body": "* " + r.Body,
			"m.new_content": content,
			"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": r.EventID},
		}
		if r.Format != "" {
			content["format"], content["formatted_body"] = r.Format, "* "+r.FormattedBody
		}
	} else {
		if r.URL != "" {
			content["url"] = r.URL
		}
		if len(r.Info) > 0 {
			content["info"] = r.Info
		}
		if r.Filename != "" {
			content["filename"] = r.Filename
		}
		if r.ReplyTo != "" {
			if e := c.inRoom(ctx, r.RoomID, r.ReplyTo, "/reply_to"); e != nil {
				return nil, e
			}
			content["m.relates_to"] = map[string]any{"m.in_reply_to": map[string]string{"event_id": r.ReplyTo}}
		}
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, errf(CodeBadEvent, "", "")
	}
	res, err := c.g.cfg.Rooms.Send(ctx, rooms.Submit{
		RoomID: id.RoomID(r.RoomID), Sender: u, Type: "m.room.message", Content: raw,
		Txn: &store.TxnKey{UserID: string(u), DeviceID: c.device, TxnID: r.TxnID},
	})
	if err != nil {
		return nil, c.roomsError(err, "")
	}
	return map[string]string{"event_id": string(res.EventID)}, nil
}

// inRoom checks that an event referred to belongs to the room.
func (c *conn) inRoom(ctx context.Context, roomID, eventID, field string) *Error {
	ev, err := c.g.cfg.Store.EventByID(ctx, eventID)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && ev.RoomID != roomID):
		return errf(CodeUnknownEvent, field, "")
	case err != nil:
		return errf(CodeUnavailable, "", "")
	}
	return nil
}

// ownMessage checks that an edit targets a message of the same user.
func (c *conn) ownMessage(ctx context.Context, roomID, eventID string, u id.UserID) *Error {
	ev, err := c.g.cfg.Store.EventByID(ctx, eventID)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && ev.RoomID != roomID):
		return errf(CodeUnknownEvent, "/event_id", "")
	case err != nil:
		return errf(CodeUnavailable, "", "")
	case ev.Sender != string(u) || ev.Type != "m.room.message":
		return errf(CodeForbidden, "/event_id", "only one's own messages can be edited")
	}
	return nil
}

func (c *conn) readReceipt(ctx context.Context, f Frame) (any, *Error) {
	r, u, e := decodeActing[roomReq](c, f)
	if e != nil {
		return nil, e
	}
	if e := c.mustBeIn(ctx, r.RoomID, u, func(m string) bool { return m == "join" }); e != nil {
		return nil, e
	}
	if e := c.inRoom(ctx, r.RoomID, r.EventID, "/event_id"); e != nil {
		return nil, e
	}
	if _, err := c.g.cfg.Store.PutReceipt(ctx, store.Receipt{
		RoomID: r.RoomID, UserID: string(u), Type: "m.read", EventID: r.EventID, TS: time.Now().UnixMilli(),
	}); err != nil {
		c.log.Error("read receipt", "err", err)
		return nil, errf(CodeUnavailable, "", "")
	}
	if c.g.cfg.Ephemeral != nil {
		c.g.cfg.Ephemeral.Wake(r.RoomID, "")
	}
	return map[string]any{}, nil
}

func (c *conn) typing(ctx context.Context, f Frame) (any, *Error) {
	r, u, e := decodeActing[roomReq](c, f)
	if e != nil {
		return nil, e
	}
	if e := c.mustBeIn(ctx, r.RoomID, u, func(m string) bool { return m == "join" }); e != nil {
		return nil, e
	}
	if c.g.cfg.Ephemeral == nil {
		return map[string]any{}, nil
	}
	timeout := time.Duration(r.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if err := c.g.cfg.Ephemeral.SetTyping(r.RoomID, string(u), r.Typing, timeout); err != nil {
		c.log.Warn("typing", "err", err)
		return nil, errf(CodeUnavailable, "", "")
	}
	return map[string]any{}, nil
}

func (c *conn) search(ctx context.Context, f Frame) (any, *Error) {
	r, e := decodeReq[searchReq](f)
	if e != nil {
		return nil, e
	}
	if c.g.cfg.Search == nil {
		return nil, errf(CodeUnsupported, "", "")
	}
	limit := int(r.Limit)
	if limit <= 0 {
		limit = 10
	}
	entries := c.g.cfg.Search(r.Query, limit)
	lps := make([]string, len(entries))
	for i, en := range entries {
		lps[i] = en.IDNat
	}
	exists, err := c.g.cfg.Store.AccountsExist(ctx, lps)
	if err != nil {
		return nil, errf(CodeUnavailable, "", "")
	}
	out := make([]practitioner, 0, len(entries))
	for _, en := range entries {
		profs := en.ProfessionCodes
		if profs == nil {
			profs = []string{}
		}
		out = append(out, practitioner{
			UserID: string(id.NewUserID(en.IDNat, c.g.cfg.ServerName)), IDNat: en.IDNat,
			DisplayName: en.DisplayName, Professions: profs, Reachable: exists[en.IDNat],
		})
	}
	return map[string]any{"results": out}, nil
}

func (c *conn) upload(ctx context.Context, f Frame) (any, *Error) {
	r, u, e := decodeActing[uploadReq](c, f)
	if e != nil {
		return nil, e
	}
	if c.g.cfg.Media == nil {
		return nil, errf(CodeUnsupported, "", "this hub has no media store for uploads")
	}
	data, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return nil, errf(CodeInvalidField, "/data", "data must be standard base64 (RFC 4648, padded)")
	}
	mxc, err := c.g.cfg.Media.Upload(ctx, u, r.ContentType, r.Filename, bytes.NewReader(data))
	if err != nil {
		// The error is not logged: a media store's message may quote the
		// file's name, which can name a patient.
		c.log.Warn("bridge upload refused", "user", u, "bytes", len(data))
		return nil, errf(CodeUploadRefused, "", "")
	}
	return map[string]string{"content_uri": mxc}, nil
}
