package clientapi

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/store"
)

// Bounds on profile fields, Synapse's: every member event a user sends
// carries both, so an unbounded value makes each of their joins exceed
// the 64 KiB event limit.
const (
	MaxDisplayNameRunes = 256
	MaxAvatarURLBytes   = 1000
)

// checkProfileValue validates a new value of a profile field: a display
// name of at most MaxDisplayNameRunes characters without control
// characters, or an avatar that is empty (removed) or a well-formed mxc://
// URI of at most MaxAvatarURLBytes. Nothing else is stored.
func checkProfileValue(field, val string) *mautrix.RespError {
	bad := func(format string, args ...any) *mautrix.RespError {
		e := mautrix.MInvalidParam.WithMessage(format, args...)
		return &e
	}
	switch field {
	case "displayname":
		if utf8.RuneCountInString(val) > MaxDisplayNameRunes {
			return bad("displayname is longer than %d characters", MaxDisplayNameRunes)
		}
		if strings.ContainsFunc(val, unicode.IsControl) {
			return bad("displayname contains control characters")
		}
	case "avatar_url":
		if val == "" {
			return nil
		}
		if len(val) > MaxAvatarURLBytes {
			return bad("avatar_url is longer than %d bytes", MaxAvatarURLBytes)
		}
		if !validAvatar(val) {
			return bad("avatar_url must be an mxc:// URI (mxc://<server>/<media ID>)")
		}
	}
	return nil
}

func validAvatar(v string) bool {
	if v == "" || len(v) > MaxAvatarURLBytes {
		return false
	}
	u, err := id.ParseContentURI(v)
	return err == nil && u.IsValid() && u.String() == v
}

// safeDisplayName and safeAvatar are what goes into member events and
// profile answers: a value stored before the bounds existed (or written
// straight to the database) must not make every join of its owner fail, so
// an over-long name is cut and an invalid avatar left out.
func safeDisplayName(name string) string {
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, name)
	if utf8.RuneCountInString(name) > MaxDisplayNameRunes {
		name = string([]rune(name)[:MaxDisplayNameRunes])
	}
	return name
}

func safeAvatar(url string) string {
	if !validAvatar(url) {
		return ""
	}
	return url
}

// optionalAuth serves endpoints the spec leaves open to unauthenticated
// callers: with a token, the caller is authenticated as by auth (a bad
// token is still 401); without one, h gets a nil session.
func (a *API) optionalAuth(h func(w http.ResponseWriter, r *http.Request, s *identity.Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if httpapi.AccessToken(r) == "" {
			h(w, r, nil)
			return
		}
		a.auth(func(w http.ResponseWriter, r *http.Request, s identity.Session) { h(w, r, &s) })(w, r)
	}
}

// visibleProfile loads the profile of userID if viewer may see it.
//
// Whether an account exists on a health hub says who works with it, so
// that is not told to strangers. With ProfileRequiresAuth (the default)
// an unauthenticated caller is refused outright (M_MISSING_TOKEN).
// Otherwise, and for authenticated callers, a profile is shown when the
// user is someone the directory search would list anyway (reachable: an
// account the trust space admits), is the viewer, or shares a room with
// the viewer. Every other case, including an account that does not exist
// and the account of an inactive practitioner, is the same 404.
func (a *API) visibleProfile(w http.ResponseWriter, r *http.Request, viewer *identity.Session, userID string) (*store.Account, bool) {
	if viewer == nil && a.cfg.ProfileRequiresAuth {
		writeErr(w, mautrix.MMissingToken.WithMessage("Missing access token: profiles are only shown to signed-in users"))
		return nil, false
	}
	notFound := func() (*store.Account, bool) {
		writeErr(w, mautrix.MNotFound.WithMessage("Profile not found"))
		return nil, false
	}
	uid := id.UserID(userID)
	lp, err := a.ids.LocalpartOf(uid)
	if err != nil || identity.ValidateLocalpart(lp) != nil {
		return notFound()
	}
	acc, err := a.st.GetAccount(r.Context(), lp)
	if err != nil {
		return notFound()
	}
	uid = a.ids.UserID(lp)
	switch {
	case viewer != nil && viewer.UserID == uid:
	case a.trust.Policy == nil || a.trust.Policy.CheckUser(uid) == nil:
	case viewer != nil:
		shared, err := a.shareRoom(r, viewer.UserID, uid)
		if err != nil {
			a.internal(w, r, err)
			return nil, false
		}
		if !shared {
			return notFound()
		}
	default:
		return notFound()
	}
	return acc, true
}

// shareRoom reports whether other has a membership (any: a former member
// is still listed there) in a room viewer is joined to or invited to.
func (a *API) shareRoom(r *http.Request, viewer, other id.UserID) (bool, error) {
	mine, err := a.st.UserMemberships(r.Context(), string(viewer))
	if err != nil {
		return false, err
	}
	in := map[string]bool{}
	for _, m := range mine {
		if m.Membership == "join" || m.Membership == "invite" {
			in[m.RoomID] = true
		}
	}
	if len(in) == 0 {
		return false, nil
	}
	theirs, err := a.st.UserMemberships(r.Context(), string(other))
	if err != nil {
		return false, err
	}
	for _, m := range theirs {
		if in[m.RoomID] {
			return true, nil
		}
	}
	return false, nil
}
