package clientapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
)

// ownUserPath checks what every endpoint under /user/{userId}/ (filters,
// account data, tags) must: the path names the caller, and a room in the
// path is a room ID. Without it a caller asking for someone else's data
// would be answered with their own, as if it were the other user's. It
// writes the refusal and reports false.
func (a *API) ownUserPath(w http.ResponseWriter, r *http.Request, s identity.Session) bool {
	if r.PathValue("userId") != string(s.UserID) {
		a.refuse(r.Context(), door.Refusal{Code: string(policy.NotYourData), Actor: string(s.UserID),
			Action: "user_data.access", Target: r.PathValue("userId")})
		writeErr(w, mautrix.MForbidden.WithMessage("You can only access your own filters, account data and tags"))
		return false
	}
	if strings.Contains(r.Pattern, "{roomId}") && !validRoomID(r.PathValue("roomId")) {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Invalid room ID"))
		return false
	}
	return true
}

// validRoomID is the spec's shape of a room ID: "!" then an opaque part;
// rooms of versions before 12 end with ":server".
func validRoomID(room string) bool {
	return len(room) > 1 && len(room) <= 255 && room[0] == '!' &&
		!strings.ContainsFunc(room, func(c rune) bool { return c < 0x21 || c == 0x7f })
}

// serverOwnedAccountData are the account data types the server keeps for
// a client: setting them through the generic endpoint would bypass the
// checks of their own endpoints (the spec answers 405 M_BAD_JSON).
var serverOwnedAccountData = map[string]string{
	"m.fully_read": "use POST /rooms/{roomId}/read_markers",
	"m.push_rules": "use the /pushrules endpoints",
}

// isJSONNumber reports whether a decoded JSON value is a number, however
// the decoder represents numbers.
func isJSONNumber(v any) bool {
	switch v.(type) {
	case float64, json.Number, int64:
		return true
	}
	return false
}

// validEventID is the shape of an event ID ("$" and an opaque part, at
// most 255 bytes), for IDs the hub stores without looking them up
// (receipts, read markers): each is copied into every member's /sync.
func validEventID(ev string) bool {
	return len(ev) > 1 && len(ev) <= 255 && ev[0] == '$' &&
		!strings.ContainsFunc(ev, func(c rune) bool { return c < 0x21 || c == 0x7f })
}
