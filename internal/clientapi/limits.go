package clientapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/codes"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/ratelimit"
)

// SetLimits turns rate limiting on; call before serving. Without it
// nothing is limited.
func (a *API) SetLimits(l *ratelimit.Limits) { a.limits = l }

// LimitExceeded is the spec's answer to a rate-limited request: 429
// M_LIMIT_EXCEEDED with retry_after_ms, and a Retry-After header for
// HTTP clients and proxies.
func LimitExceeded(retry time.Duration) mautrix.RespError {
	ms := max(1, (retry+time.Millisecond-1)/time.Millisecond)
	secs := max(1, (retry+time.Second-1)/time.Second)
	return codes.RespError(string(policy.RateLimited), "Too many requests, retry in "+strconv.FormatInt(int64(ms), 10)+" ms").
		WithExtraField("retry_after_ms", int64(ms)).
		WithExtraHeader("Retry-After", strconv.FormatInt(int64(secs), 10))
}

// operatorOf is the appservice a session's requests count against: the
// one whose as_token made the request, or the one whose exclusive
// namespace holds the user (a puppet logged in with a device of its
// own). "" for a person.
func (a *API) operatorOf(s identity.Session) string {
	if s.Appservice != "" {
		return s.Appservice
	}
	if a.appservices != nil && s.UserID != "" {
		if asID, ok := a.appservices.Exclusive(s.UserID); ok {
			return asID
		}
	}
	return ""
}

// limit spends n tokens of act for the session: the user's own buckets,
// or for an appservice its operator buckets (whichever user it acts as).
// A refusal is answered with 429 and recorded; it reports whether the
// request may go on. ref carries the audit action and what it is about.
func (a *API) limit(w http.ResponseWriter, r *http.Request, s identity.Session, act ratelimit.Action, n int, ref door.Refusal) bool {
	if ref.Actor == "" {
		ref.Actor = string(s.UserID)
	}
	if asID := a.operatorOf(s); asID != "" {
		return a.limitAppservice(w, r, asID, act, n, ref)
	}
	ref.Door = door.Of(door.Client, string(s.DeviceID))
	return a.decide(w, r, a.limits.Allow(act, string(s.UserID), n), act, ref)
}

// limitAppservice spends n tokens of act's operator limit for appservice
// asID.
func (a *API) limitAppservice(w http.ResponseWriter, r *http.Request, asID string, act ratelimit.Action, n int, ref door.Refusal) bool {
	ref.Door = door.Of(door.Appservice, asID)
	act = act.Operator()
	return a.decide(w, r, a.limits.Allow(act, "appservice:"+asID, n), act, ref)
}

// limitAddress spends a token of act for the client's address (requests
// made before there is an account: login, registration).
func (a *API) limitAddress(w http.ResponseWriter, r *http.Request, act ratelimit.Action, action string) bool {
	addr := a.limits.ClientAddress(r)
	return a.decide(w, r, a.limits.Allow(act, addr, 1), act,
		door.Refusal{Door: door.Of(door.Client, ""), Action: action, Target: addr})
}

// decide answers a refused request. The refusal is recorded only when it
// starts an episode (the first since the key was last allowed): the
// recorder counts and audits, and a script hammering a limit would
// otherwise write one audit entry per request. The metric therefore
// counts limited episodes, not refused requests.
func (a *API) decide(w http.ResponseWriter, r *http.Request, d ratelimit.Decision, act ratelimit.Action, ref door.Refusal) bool {
	if d.OK {
		return true
	}
	if d.First {
		ref.Code = string(policy.RateLimited)
		ref.RequestID = httpapi.RequestID(r.Context())
		a.refuse(r.Context(), ref)
		a.log.Info("rate limited", "limit", act.String(), "door", ref.Door.String(), "actor", ref.Actor, "retry_after", d.RetryAfter)
	}
	writeErr(w, LimitExceeded(d.RetryAfter))
	return false
}

// limitCreateRoom counts a new room as a join, and its invites as
// invites.
func (a *API) limitCreateRoom(w http.ResponseWriter, r *http.Request, s identity.Session, invites int) bool {
	if !a.limit(w, r, s, ratelimit.Join, 1, door.Refusal{Action: "room.create"}) {
		return false
	}
	return invites == 0 || a.limit(w, r, s, ratelimit.Invite, invites, door.Refusal{Action: "room.invite"})
}

// LimitUpload applies the media upload limit to an authenticated upload
// (the media repository calls it through its upload gate). It returns
// nil, or the error to answer with (LimitExceeded).
func (a *API) LimitUpload(r *http.Request) error {
	s, err := a.session(r)
	if err != nil {
		return err
	}
	act, key, ref := ratelimit.MediaUpload, string(s.UserID), door.Refusal{Action: "media.upload", Actor: string(s.UserID)}
	ref.Door = door.Of(door.Client, string(s.DeviceID))
	if asID := a.operatorOf(s); asID != "" {
		act, key, ref.Door = act.Operator(), "appservice:"+asID, door.Of(door.Appservice, asID)
	}
	d := a.limits.Allow(act, key, 1)
	if d.OK {
		return nil
	}
	if d.First {
		ref.Code = string(policy.RateLimited)
		ref.RequestID = httpapi.RequestID(r.Context())
		a.refuse(r.Context(), ref)
		a.log.Info("rate limited", "limit", act.String(), "door", ref.Door.String(), "actor", ref.Actor, "retry_after", d.RetryAfter)
	}
	return LimitExceeded(d.RetryAfter)
}

// accountKey is the failed-login key of the account a login names.
func accountKey(localpart string) string { return strings.ToLower(localpart) }

// limitLogin checks a password login against the account's attempt limit
// and its lockout after wrong passwords.
func (a *API) limitLogin(w http.ResponseWriter, r *http.Request, localpart string) bool {
	key := accountKey(localpart)
	d := a.limits.LoginLocked(key)
	if d.OK {
		d = a.limits.Allow(ratelimit.LoginAccount, key, 1)
	}
	if d.OK {
		return true
	}
	ref := door.Refusal{Door: door.Of(door.Client, ""), Action: "login"}
	if d.First {
		ref.Actor = a.loginActor(r, localpart)
	}
	return a.decide(w, r, d, ratelimit.LoginAccount, ref)
}

// loginFailed audits a wrong password with the account it named (never
// the password) and counts it towards the account's lockout. localpart
// is "" when the name is no local account's.
func (a *API) loginFailed(r *http.Request, localpart string) {
	var actor string
	if localpart != "" {
		actor = a.loginActor(r, localpart)
		if lock := a.limits.LoginFailed(accountKey(localpart)); lock > 0 {
			a.log.Info("password logins locked out after repeated failures", "user", actor, "for", lock)
		}
	}
	a.refuse(r.Context(), door.Refusal{
		Door: door.Of(door.Client, ""), Code: string(policy.BadCredentials), Action: "login",
		Actor: actor, RequestID: httpapi.RequestID(r.Context()),
	})
}

// loginActor is the user a login names, for the audit trail, when such
// an account exists; otherwise "". People type their password in the
// username field: a name that is no account's must not reach the trail.
func (a *API) loginActor(r *http.Request, localpart string) string {
	if identity.ValidateLocalpart(localpart) != nil {
		return ""
	}
	if _, err := a.st.GetAccount(r.Context(), localpart); err != nil {
		return ""
	}
	return string(a.ids.UserID(localpart))
}
