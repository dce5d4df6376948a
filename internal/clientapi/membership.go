package clientapi

import (
	"errors"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
)

// currentMembership is u's membership of a room ("" for none).
func (a *API) currentMembership(r *http.Request, roomID string, u id.UserID) (string, error) {
	ev, err := a.st.CurrentStateEvent(r.Context(), roomID, "m.room.member", string(u))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return ev.Membership, nil
}

// checkTarget is what the auth rules leave to the server for kick and
// unban (Synapse checks it too): a kick is of someone in the room (joined,
// invited or knocking; kicking a banned user would lift the ban), an unban
// of someone banned. Only asked when the sender is joined, so the answer
// does not tell an outsider who is in the room; an outsider is refused by
// the room's auth rules. It writes the refusal and reports false.
func (a *API) checkTarget(w http.ResponseWriter, r *http.Request, s identity.Session, req targetRequest, want ...string) bool {
	if !validTarget(w, req) {
		return false
	}
	target := id.UserID(req.UserID)
	roomID := r.PathValue("roomId")
	mine, err := a.currentMembership(r, roomID, s.UserID)
	if err != nil {
		a.internal(w, r, err)
		return false
	}
	if mine != "join" {
		return true
	}
	theirs, err := a.currentMembership(r, roomID, target)
	if err != nil {
		a.internal(w, r, err)
		return false
	}
	for _, m := range want {
		if theirs == m {
			return true
		}
	}
	if want[0] == "ban" {
		a.forbid(w, r, policy.RoomRules, actionOf(r), string(target), mautrix.MForbidden.WithMessage("The target user is not banned from the room"))
	} else {
		a.forbid(w, r, policy.RoomRules, actionOf(r), string(target), mautrix.MForbidden.WithMessage("The target user is not in the room"))
	}
	return false
}

// forget is POST /rooms/{roomId}/forget. Only a room one has left (or was
// never in) can be forgotten; while joined, invited or knocking the spec
// answers 400. A left room is already out of /sync (initial syncs list no
// left rooms, incremental ones only a leave newer than the token), so
// there is nothing more to store.
func (a *API) forget(w http.ResponseWriter, r *http.Request, s identity.Session) {
	roomID := r.PathValue("roomId")
	if !validRoomID(roomID) {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Invalid room ID"))
		return
	}
	m, err := a.currentMembership(r, roomID, s.UserID)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	switch m {
	case "join", "invite", "knock":
		writeErr(w, mautrix.MUnknown.WithStatus(http.StatusBadRequest).WithMessage("The user is in the room (%s): leave it before forgetting it", m))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// validTarget refuses a target that is not a user ID (400).
func validTarget(w http.ResponseWriter, req targetRequest) bool {
	if _, _, err := id.UserID(req.UserID).ParseAndValidateRelaxed(); err != nil {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Invalid user ID"))
		return false
	}
	return true
}
