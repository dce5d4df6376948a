package clientapi

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
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

// AuditEvent is one decision for the audit trail: metadata only.
type AuditEvent struct {
	Actor     string
	Action    string
	RoomID    string
	Target    string
	Allowed   bool
	Reason    string // a refusal code, never content
	RequestID string
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
	SSO    SSO
}

// SetTrust installs the trust space; call before serving.
func (a *API) SetTrust(t Trust) { a.trust = t }

// forbidden turns a policy refusal into M_FORBIDDEN carrying the stable
// code beside the human reason, so clients and bridges can branch on it.
func forbidden(ref *policy.Refusal) mautrix.RespError {
	return mautrix.MForbidden.WithMessage("%s", ref.Error()).WithExtraField("eimis_code", string(ref.Code))
}

// audit records a decision, with the request's ID.
func (a *API) audit(r *http.Request, e AuditEvent) {
	if a.trust.Audit == nil {
		return
	}
	e.RequestID = RequestID(r.Context())
	a.trust.Audit.Record(r.Context(), e)
}

type requestIDKey struct{}

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// WithRequestID gives every request an ID (a well-formed X-Request-Id from
// the reverse proxy, or a new one), echoes it in the response and puts it
// in the context, so an audit entry can be matched with proxy logs.
func WithRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := r.Header.Get("X-Request-Id")
		if !validRequestID.MatchString(rid) {
			rid = rand.Text()[:20]
		}
		w.Header().Set("X-Request-Id", rid)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, rid)))
	})
}

// RequestID is the ID WithRequestID gave the request, or "".
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(requestIDKey{}).(string)
	return s
}

// actionOf names the action of a refused write for the audit trail.
func actionOf(r *http.Request) string {
	p := r.Pattern
	switch {
	case strings.HasSuffix(p, "/createRoom"):
		return "room.create"
	case strings.HasSuffix(p, "/invite"):
		return "room.invite"
	case strings.HasSuffix(p, "/join"), strings.Contains(p, "/join/"):
		return "room.join"
	case strings.Contains(p, "/kick"):
		return "room.kick"
	case strings.Contains(p, "/ban"), strings.Contains(p, "/unban"):
		return "room.ban"
	case strings.Contains(p, "/redact/"):
		return "event.redact"
	case strings.Contains(p, "/send/"), strings.Contains(p, "/state/"):
		return "event.send"
	case strings.Contains(p, "/profile/"):
		return "profile.update"
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
	actor := actorOf(r)
	roomID := r.PathValue("roomId")
	if roomID == "" {
		roomID = r.PathValue("roomIdOrAlias")
	}
	a.audit(r, AuditEvent{Actor: actor, Action: actionOf(r), RoomID: roomID, Target: ref.Subject, Reason: string(ref.Code)})
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
	if r.URL.Query().Has("access_token") || !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return "", mautrix.MMissingToken.WithMessage("The admin API takes the access token in the Authorization header (Bearer), never in the URL")
	}
	s, err := a.session(r)
	if err != nil {
		return "", err
	}
	if !s.Admin {
		a.audit(r, AuditEvent{Actor: string(s.UserID), Action: "admin.access", Reason: "NOT_A_SERVER_ADMIN"})
		return "", mautrix.MForbidden.WithMessage("%s is not a server admin", s.UserID)
	}
	return string(s.UserID), nil
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
	tok := accessToken(r)
	if tok == "" {
		return identity.Session{}, mautrix.MMissingToken.WithMessage("Missing access token")
	}
	s, err := a.ids.Authenticate(r.Context(), tok)
	if errors.Is(err, identity.ErrUnknownToken) {
		return identity.Session{}, mautrix.MUnknownToken.WithMessage("Unknown access token").WithExtraField("soft_logout", false)
	}
	return s, err
}
