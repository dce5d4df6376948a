package clientapi

import (
	"context"
	"errors"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/inbound"
	"github.com/eimis-hub/eimis/internal/identity"
)

// Federation is the room side of federation as the Client-Server API uses
// it (federation/inbound.Server): joining a room another server hosts,
// inviting a user of another server, declining an invite from elsewhere.
// Each answers inbound.ErrLocal when the ordinary local path applies.
type Federation interface {
	JoinRoom(ctx context.Context, user id.UserID, roomIDOrAlias string, serverNames []string) (id.RoomID, error)
	Invite(ctx context.Context, inviter id.UserID, roomID id.RoomID, invitee id.UserID, reason string) (id.EventID, error)
	Leave(ctx context.Context, user id.UserID, roomID id.RoomID) error
}

type fedHolder struct{ f Federation }

// SetFederation turns on remote joins, invites and leaves.
func (a *API) SetFederation(f Federation) { a.fed.Store(&fedHolder{f}) }

// federation is the Federation set, or nil.
func (a *API) federation() Federation {
	if h := a.fed.Load(); h != nil {
		return h.f
	}
	return nil
}

// fedErr answers a federation side error; false when the local path
// applies instead.
func (a *API) fedErr(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, inbound.ErrLocal):
		return false
	case errors.Is(err, inbound.ErrRefused):
		writeErr(w, mautrix.MForbidden.WithMessage("Refused by the trust space"))
	case errors.Is(err, inbound.ErrNotFound):
		writeErr(w, mautrix.MNotFound.WithMessage("Room not found"))
	case errors.Is(err, inbound.ErrNoServer):
		writeErr(w, mautrix.MNotFound.WithMessage("No server of the trust space could reach the room"))
	default:
		a.roomsErr(w, r, err)
	}
	return true
}

// joinRemote joins target through another server when this one is not in
// the room; false when the local join applies.
func (a *API) joinRemote(w http.ResponseWriter, r *http.Request, s identity.Session, target string) bool {
	fed := a.federation()
	if fed == nil {
		return false
	}
	q := r.URL.Query()
	servers := append(q["server_name"], q["via"]...)
	roomID, err := fed.JoinRoom(r.Context(), s.UserID, target, servers)
	if !a.fedErr(w, r, err) {
		return false
	}
	if err == nil {
		writeJSON(w, http.StatusOK, map[string]any{"room_id": roomID})
	}
	return true
}

// inviteRemote invites a user of another server; false for a local one.
func (a *API) inviteRemote(w http.ResponseWriter, r *http.Request, s identity.Session, invitee id.UserID, reason string) bool {
	fed := a.federation()
	if fed == nil || invitee.Homeserver() == a.cfg.ServerName {
		return false
	}
	_, err := fed.Invite(r.Context(), s.UserID, id.RoomID(r.PathValue("roomId")), invitee, reason)
	if !a.fedErr(w, r, err) {
		return false
	}
	if err == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
	}
	return true
}

// leaveRemote declines an invite to a room this server is not in.
func (a *API) leaveRemote(w http.ResponseWriter, r *http.Request, s identity.Session) bool {
	fed := a.federation()
	if fed == nil {
		return false
	}
	err := fed.Leave(r.Context(), s.UserID, id.RoomID(r.PathValue("roomId")))
	if !a.fedErr(w, r, err) {
		return false
	}
	if err == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
	}
	return true
}
