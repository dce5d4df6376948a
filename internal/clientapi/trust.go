package clientapi

import (
	"context"
	"errors"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/codes"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/rooms"
)

// Policy is what the Client-Server API asks the trust space directly (the
// room server asks it about every event on its own).
type Policy interface {
	CheckLogin(u id.UserID) error
	CheckUser(u id.UserID) error
	DisplayName(u id.UserID) (string, bool)
}

// AuditEvent is one allowed decision for the audit trail: metadata only.
// A refusal (Allowed false) takes the one refusal path instead
// (Trust.Refusals), which counts it as well.
type AuditEvent struct {
	Actor     string
	Action    string
	RoomID    string
	Target    string
	Allowed   bool
	Reason    string // a refusal code, never content
	RequestID string
	Door      string // where the request entered (internal/door)
}

// Auditor records decisions. Record must not fail the request: the trail
// has its own durability and alarms.
type Auditor interface {
	Record(ctx context.Context, e AuditEvent)
}

// Trust wires the trust space into the API. Every field is optional, so
// the API also runs bare (tools, tests of the API alone).
type Trust struct {
	Policy Policy
	// Search finds active practitioners in the health directory.
	Search func(query string, limit int) []directory.Entry
	Audit  Auditor
	// Refusals is the one path every refusal takes: it counts it
	// (eimis_policy_refusals_total{code,door}) and audits it.
	Refusals door.Recorder
	SSO      SSO
}

// SetTrust installs the trust space; call before serving.
func (a *API) SetTrust(t Trust) { a.trust = t }

// forbidden turns a policy refusal into the Matrix error the code table
// gives it (M_FORBIDDEN for the trust space's codes) carrying the stable
// code beside the human reason, so clients and bridges can branch on it.
func forbidden(ref *policy.Refusal) mautrix.RespError {
	return codes.RespError(string(ref.Code), ref.Error())
}

// audit records a decision, with the request's ID and door. A refusal
// goes through the one refusal path, which counts it too.
func (a *API) audit(r *http.Request, e AuditEvent) {
	if !e.Allowed {
		a.refuse(r.Context(), door.Refusal{Code: e.Reason, Actor: e.Actor, Action: e.Action, RoomID: e.RoomID, Target: e.Target})
		return
	}
	if a.trust.Audit == nil {
		return
	}
	e.RequestID = httpapi.RequestID(r.Context())
	e.Door = door.From(r.Context()).String()
	a.trust.Audit.Record(r.Context(), e)
}

// forbid answers a refusal the Client-Server API decides itself (not
// the trust space's or the room server's): it takes the one refusal path
// with its code and action, then writes e.
func (a *API) forbid(w http.ResponseWriter, r *http.Request, code policy.Code, action, target string, e mautrix.RespError) {
	roomID := r.PathValue("roomId")
	a.refuse(r.Context(), door.Refusal{Code: string(code), Actor: actorOf(r), Action: action, RoomID: roomID, Target: target})
	writeErr(w, e)
}

// refuse hands a refusal to the one refusal path, with the door and
// request ID of the request it came from.
func (a *API) refuse(ctx context.Context, ref door.Refusal) {
	if ref.Door.Kind == "" {
		ref.Door = door.From(ctx)
	}
	if ref.RequestID == "" {
		ref.RequestID = httpapi.RequestID(ctx)
	}
	if a.trust.Refusals != nil {
		a.trust.Refusals.Refused(ctx, ref)
	}
}

type actionKey struct{}

// act declares the audit action of a route's writes, so a refusal met
// deep inside (the room server's trust gate) is recorded under the action
// the route performs, never guessed from its path.
func act(action string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, r.WithContext(context.WithValue(r.Context(), actionKey{}, action)))
	}
}

// actionOf is the action the route declared with act ("request" for a
// route that declared none).
func actionOf(r *http.Request) string {
	if s, ok := r.Context().Value(actionKey{}).(string); ok {
		return s
	}
	return "request"
}

// roomRefusal writes and audits a room server refusal that came from the
// trust space; it reports false for any other error.
func (a *API) roomRefusal(w http.ResponseWriter, r *http.Request, err error) bool {
	ref, ok := policy.AsRefusal(err)
	if !ok || !errors.Is(err, rooms.ErrForbidden) {
		return false
	}
	roomID := r.PathValue("roomId")
	if roomID == "" {
		roomID = r.PathValue("roomIdOrAlias")
	}
	a.refuse(r.Context(), door.Refusal{Code: string(ref.Code), Actor: actorOf(r), Action: actionOf(r), RoomID: roomID, Target: ref.Subject})
	writeErr(w, forbidden(ref))
	return true
}

type sessionKey struct{}

// actorOf is the user an authenticated request comes from, for the audit
// trail ("" before authentication).
func actorOf(r *http.Request) string {
	if s, ok := r.Context().Value(sessionKey{}).(identity.Session); ok {
		return string(s.UserID)
	}
	return ""
}

// AdminUser authenticates a request to the admin API: a valid access token
// of a server admin account (eimis-hub user create --kind admin).
func (a *API) AdminUser(r *http.Request) (string, error) {
	// Admin tokens travel in the Authorization header only: a token in
	// the URL ends up in proxy logs and browser history.
	if httpapi.TokenInURL(r) || httpapi.BearerToken(r) == "" {
		return "", mautrix.MMissingToken.WithMessage("The admin API takes the access token in the Authorization header (Bearer), never in the URL")
	}
	s, err := a.session(r)
	if err != nil {
		return "", err
	}
	if !s.Admin {
		a.refuse(door.With(r.Context(), door.Of(door.Admin, string(s.UserID))),
			door.Refusal{Code: string(policy.NotServerAdmin), Actor: string(s.UserID), Action: "admin.access"})
		return "", mautrix.MForbidden.WithMessage("%s is not a server admin", s.UserID)
	}
	return string(s.UserID), nil
}

// Authenticate authenticates a request by its access token, for
// components that mount their own routes (consent): the user and the door
// (the device) it came through.
func (a *API) Authenticate(r *http.Request) (string, door.Door, error) {
	s, err := a.session(r)
	if err != nil {
		return "", door.Door{}, err
	}
	return string(s.UserID), door.Of(door.Client, string(s.DeviceID)), nil
}

// UserID authenticates a request by its access token, for components that
// mount their own routes (media).
func (a *API) UserID(r *http.Request) (string, error) {
	s, err := a.session(r)
	if err != nil {
		return "", err
	}
	return string(s.UserID), nil
}

// session authenticates r's access token, answering with the Matrix
// errors the spec gives for a missing or unknown token.
func (a *API) session(r *http.Request) (identity.Session, error) {
	tok := httpapi.AccessToken(r)
	if tok == "" {
		return identity.Session{}, mautrix.MMissingToken.WithMessage("Missing access token")
	}
	s, err := a.ids.Authenticate(r.Context(), tok)
	if errors.Is(err, identity.ErrUnknownToken) {
		return identity.Session{}, mautrix.MUnknownToken.WithMessage("Unknown access token").WithExtraField("soft_logout", false)
	}
	return s, err
}
