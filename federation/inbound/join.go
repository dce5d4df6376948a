package inbound

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// The resident side of joining, leaving and inviting: make_join/send_join
// and make_leave/send_leave for users of the origin's server, and invites
// of local users from it.

// roomsErr answers a room server error.
func (s *Server) roomsErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, rooms.ErrUnknownRoom), errors.Is(err, rooms.ErrNotInRoom):
		writeErr(w, mautrix.MNotFound.WithMessage("Room not found"))
	case errors.Is(err, rooms.ErrForbidden):
		writeErr(w, mautrix.MForbidden.WithMessage("Not allowed by the room's rules"))
	case errors.Is(err, rooms.ErrUnsupportedRoomVersion):
		writeErr(w, mautrix.MIncompatibleRoomVersion.WithMessage("Unsupported room version"))
	case errors.Is(err, rooms.ErrBadPDU), errors.Is(err, rooms.ErrBadSignature), errors.Is(err, rooms.ErrBadEvent),
		errors.Is(err, rooms.ErrMissingAuth), errors.Is(err, rooms.ErrMissingPrev):
		writeErr(w, mautrix.MBadJSON.WithMessage("%s", refusalText(err).Error()))
	default:
		internal(s.log, w, err)
	}
}

// memberOfOrigin checks the path's user is of the origin's server and,
// unless leaving, allowed by the trust space.
func (s *Server) memberOfOrigin(w http.ResponseWriter, r *http.Request, user id.UserID, check bool) bool {
	o, ok := origin(w, r)
	if !ok {
		return false
	}
	if _, hs, err := user.Parse(); err != nil || hs != o {
		s.count("member_wrong_origin")
		writeErr(w, mautrix.MForbidden.WithMessage("The user is not of the requesting server"))
		return false
	}
	if check {
		if err := s.cfg.Users.UserAllowed(r.Context(), string(user)); err != nil {
			s.count("member_user_refused")
			writeErr(w, mautrix.MForbidden.WithMessage("The user may not take part in this trust space"))
			return false
		}
	}
	return true
}

func (s *Server) makeMembership(w http.ResponseWriter, r *http.Request, membership event.Membership) {
	roomID, user := id.RoomID(r.PathValue("roomID")), id.UserID(r.PathValue("userID"))
	if !s.memberOfOrigin(w, r, user, membership == event.MembershipJoin) {
		return
	}
	if !s.serverInRoom(r.Context(), string(roomID), s.name) {
		writeErr(w, mautrix.MNotFound.WithMessage("Room not found"))
		return
	}
	t, err := s.cfg.Rooms.MakeMembership(r.Context(), roomID, user, membership)
	if err != nil {
		s.roomsErr(w, err)
		return
	}
	if membership == event.MembershipJoin {
		vers := r.URL.Query()["ver"]
		if len(vers) == 0 {
			vers = []string{"1"}
		}
		if !contains(vers, string(t.Version)) {
			writeJSON(w, http.StatusBadRequest, map[string]any{"errcode": "M_INCOMPATIBLE_ROOM_VERSION",
				"error": "Your server does not support the room's version", "room_version": t.Version})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_version": t.Version, "event": t.Event})
}

func (s *Server) handleMakeJoin(w http.ResponseWriter, r *http.Request) {
	s.makeMembership(w, r, event.MembershipJoin)
}

func (s *Server) handleMakeLeave(w http.ResponseWriter, r *http.Request) {
	s.makeMembership(w, r, event.MembershipLeave)
}

// sendMembership receives a signed join or leave of a user of the origin's
// server; it returns the stored event ID.
func (s *Server) sendMembership(w http.ResponseWriter, r *http.Request, membership event.Membership) (id.EventID, bool) {
	roomID := r.PathValue("roomID")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rooms.MaxEventBytes))
	if err != nil {
		writeErr(w, mautrix.MTooLarge.WithMessage("The event is over %d bytes", rooms.MaxEventBytes))
		return "", false
	}
	room, err := s.cfg.Store.GetRoom(r.Context(), roomID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !s.serverInRoom(r.Context(), roomID, s.name)) {
		writeErr(w, mautrix.MNotFound.WithMessage("Room not found"))
		return "", false
	} else if err != nil {
		internal(s.log, w, err)
		return "", false
	}
	evID, p, err := s.cfg.Rooms.CheckRemote(body, id.RoomVersion(room.Version))
	if err != nil {
		s.count("member_dropped")
		s.roomsErr(w, err)
		return "", false
	}
	if p.RoomID != id.RoomID(roomID) || evID != id.EventID(r.PathValue("eventID")) || p.Type != event.StateMember.Type ||
		p.StateKey == nil || *p.StateKey != string(p.Sender) || membershipOf(p) != membership {
		s.count("member_dropped")
		writeErr(w, mautrix.MBadJSON.WithMessage("Not a %s of its sender in this room with this event ID", membership))
		return "", false
	}
	if !s.memberOfOrigin(w, r, p.Sender, membership == event.MembershipJoin) {
		return "", false
	}
	got, err := s.cfg.Rooms.Receive(r.Context(), body)
	if err != nil {
		s.count("member_dropped")
		s.roomsErr(w, err)
		return "", false
	}
	if got.Outcome == rooms.Rejected || got.Outcome == rooms.SoftFailed {
		s.count("member_rejected")
		writeErr(w, mautrix.MForbidden.WithMessage("Not allowed by the room's rules"))
		return "", false
	}
	s.count("member_" + string(membership))
	return evID, true
}

func membershipOf(p *pdu.PDU) event.Membership {
	var c struct {
		Membership event.Membership `json:"membership"`
	}
	_ = json.Unmarshal(p.Content, &c)
	return c.Membership
}

// handleSendJoin is PUT /v2/send_join: the join is received, and the
// answer carries the state before it and that state's auth chain.
func (s *Server) handleSendJoin(w http.ResponseWriter, r *http.Request) {
	evID, ok := s.sendMembership(w, r, event.MembershipJoin)
	if !ok {
		return
	}
	ctx := r.Context()
	roomID := r.PathValue("roomID")
	state, err := s.stateAt(ctx, roomID, string(evID))
	if err != nil {
		internal(s.log, w, err)
		return
	}
	ids := stateIDs(state)
	stateEvs, err := s.cfg.Store.EventsByIDAny(ctx, ids)
	if err != nil {
		internal(s.log, w, err)
		return
	}
	chain, err := s.authChain(ctx, append(ids, string(evID)))
	if err != nil {
		internal(s.log, w, err)
		return
	}
	joined, err := s.cfg.Store.EventsByIDAny(ctx, []string{string(evID)})
	if err != nil || len(joined) != 1 {
		internal(s.log, w, errors.New("the join is not stored"))
		return
	}
	servers, err := s.ServersInRoom(ctx, roomID)
	if err != nil {
		internal(s.log, w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"origin": s.name, "event": joined[0].JSON, "state": jsonOf(stateEvs), "auth_chain": jsonOf(chain),
		"members_omitted": false, "servers_in_room": append([]string{s.name}, servers...),
	})
}

// handleSendLeave is PUT /v2/send_leave.
func (s *Server) handleSendLeave(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.sendMembership(w, r, event.MembershipLeave); ok {
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}

// handleInvite is PUT /v2/invite/{roomID}/{eventID}: an invite of a local
// user from the origin's server. The inviter and the invitee must both be
// allowed by the trust space (the invitee an authorised local
// practitioner with an account); the event is countersigned, and kept so
// the invitee sees it, unless this server is in the room (then it comes
// back through /send like any event).
func (s *Server) handleInvite(w http.ResponseWriter, r *http.Request) {
	o, ok := origin(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4*rooms.MaxEventBytes))
	if err != nil {
		writeErr(w, mautrix.MTooLarge.WithMessage("Request too large"))
		return
	}
	var req struct {
		Event       json.RawMessage `json:"event"`
		RoomVersion id.RoomVersion  `json:"room_version"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Event) == 0 {
		writeErr(w, mautrix.MNotJSON.WithMessage("Malformed invite"))
		return
	}
	if !rooms.IsSupported(req.RoomVersion) {
		s.count("invite_unknown_version")
		writeErr(w, mautrix.MIncompatibleRoomVersion.WithMessage("Unsupported room version"))
		return
	}
	evID, p, err := s.cfg.Rooms.CheckRemote(req.Event, req.RoomVersion)
	if err != nil {
		s.count("invite_dropped")
		s.roomsErr(w, err)
		return
	}
	if p.RoomID != id.RoomID(r.PathValue("roomID")) || evID != id.EventID(r.PathValue("eventID")) ||
		p.Type != event.StateMember.Type || p.StateKey == nil || membershipOf(p) != event.MembershipInvite {
		s.count("invite_dropped")
		writeErr(w, mautrix.MBadJSON.WithMessage("Not an invite in this room with this event ID"))
		return
	}
	invitee := id.UserID(*p.StateKey)
	lp, hs, err := invitee.Parse()
	if err != nil || hs != s.name {
		writeErr(w, mautrix.MInvalidParam.WithMessage("The invitee is not a user of this server"))
		return
	}
	if p.Sender.Homeserver() != o {
		s.count("invite_wrong_origin")
		writeErr(w, mautrix.MForbidden.WithMessage("The inviter is not of the requesting server"))
		return
	}
	if s.cfg.Users.UserAllowed(r.Context(), string(p.Sender)) != nil || s.cfg.Users.UserAllowed(r.Context(), string(invitee)) != nil {
		s.count("invite_user_refused")
		writeErr(w, mautrix.MForbidden.WithMessage("The inviter or the invitee may not take part in this trust space"))
		return
	}
	if _, err := s.cfg.Store.GetAccount(r.Context(), lp); err != nil {
		s.count("invite_user_refused")
		writeErr(w, mautrix.MNotFound.WithMessage("No such user"))
		return
	}
	signed, _, err := s.cfg.Rooms.CountersignInvite(req.RoomVersion, req.Event)
	if err != nil {
		s.roomsErr(w, err)
		return
	}
	if !s.serverInRoom(r.Context(), string(p.RoomID), s.name) {
		if _, err := s.cfg.Rooms.StoreStub(r.Context(), req.RoomVersion, signed); err != nil {
			s.roomsErr(w, err)
			return
		}
	}
	s.count("invite_accepted")
	writeJSON(w, http.StatusOK, map[string]any{"event": json.RawMessage(signed)})
}
