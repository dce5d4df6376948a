package clientapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/psc"
	"github.com/eimis-hub/eimis/internal/store"
)

// SSO is the Pro Santé Connect login (psc.Provider).
type SSO interface {
	Start(clientRedirect string) (authURL string, state string, err error)
	Finish(ctx context.Context, state, code string) (*psc.Identity, string, error)
}

const (
	// PSCProviderID is the identity provider ID clients see in the
	// m.login.sso flow.
	PSCProviderID = "psc"
	// PSCCallbackPath is the hub's redirect URI to register with PSC.
	PSCCallbackPath = "/_eimis/psc/callback"
	// loginTokenTTL: the browser hands the token to the client right
	// away; two minutes covers a slow phone, not a stolen URL left lying.
	loginTokenTTL = 2 * time.Minute
)

func (a *API) loginFlows(w http.ResponseWriter, r *http.Request) {
	flows := []map[string]any{{"type": "m.login.password"}}
	if a.trust.SSO != nil {
		flows = append(flows,
			map[string]any{"type": "m.login.sso", "identity_providers": []map[string]string{
				{"id": PSCProviderID, "name": "Pro Santé Connect", "brand": "fr.esante.psc"},
			}},
			map[string]any{"type": "m.login.token"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"flows": flows})
}

// ssoRedirect starts a Pro Santé Connect login for a Matrix client.
func (a *API) ssoRedirect(w http.ResponseWriter, r *http.Request) {
	if a.trust.SSO == nil {
		writeErr(w, mautrix.MNotFound.WithMessage("SSO login is not enabled on this hub"))
		return
	}
	if idp := r.PathValue("idpId"); idp != "" && idp != PSCProviderID {
		writeErr(w, mautrix.MNotFound.WithMessage("Unknown identity provider %q", idp))
		return
	}
	back := r.URL.Query().Get("redirectUrl")
	u, err := url.Parse(back)
	if back == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// Element desktop and mobile use http(s) redirect URLs; anything
		// else (javascript:, data:) could turn the token into an XSS.
		writeErr(w, mautrix.MInvalidParam.WithMessage("redirectUrl must be an absolute http(s) URL"))
		return
	}
	authURL, _, err := a.trust.SSO.Start(back)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	http.Redirect(w, r, authURL, http.StatusFound)
}

// pscCallback finishes a Pro Santé Connect login: the professional PSC
// vouched for must also be authorised by the directory. The account is
// created on first login; the client gets a single-use m.login.token.
func (a *API) pscCallback(w http.ResponseWriter, r *http.Request) {
	if a.trust.SSO == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		// The user cancelled or PSC refused; the state is consumed so the
		// attempt cannot be resumed.
		_, _, _ = a.trust.SSO.Finish(r.Context(), q.Get("state"), "")
		a.log.Info("psc login cancelled by provider", "error", e)
		// The provider's error parameter comes from the browser: it is
		// logged, never used as a code (metric labels stay bounded).
		a.audit(r, AuditEvent{Action: "login.sso", Reason: string(policy.PSCRefusedByProvider)})
		psc.ErrorPage(w, psc.ErrProvider)
		return
	}
	who, back, err := a.trust.SSO.Finish(r.Context(), q.Get("state"), q.Get("code"))
	if err != nil {
		a.log.Warn("psc login failed", "err", err)
		a.audit(r, AuditEvent{Action: "login.sso", Reason: pscReason(err)})
		psc.ErrorPage(w, err)
		return
	}
	uid := a.ids.UserID(who.IDNat)
	if err := a.ids.Admit(uid); err != nil {
		if ref, ok := policy.AsRefusal(err); ok {
			a.audit(r, AuditEvent{Actor: string(uid), Action: "login.sso", Target: who.IDNat, Reason: string(ref.Code)})
			psc.RefusalPage(w, ref.Error())
			return
		}
		a.internal(w, r, err)
		return
	}
	if _, err := a.st.GetAccount(r.Context(), who.IDNat); errors.Is(err, store.ErrNotFound) {
		// No password: this account logs in through PSC only.
		_, err := a.ids.CreateAccount(r.Context(), who.IDNat, "", false)
		if err != nil && !errors.Is(err, identity.ErrUserExists) {
			a.internal(w, r, err)
			return
		}
		if err == nil {
			a.audit(r, AuditEvent{Actor: string(uid), Action: "account.create", Target: who.IDNat, Allowed: true, Reason: "psc"})
		}
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	token := "eimis_lt_" + identity.RandomString(32)
	if err := a.st.PutLoginToken(r.Context(), identity.HashToken(token), who.IDNat, time.Now().Add(loginTokenTTL)); err != nil {
		a.internal(w, r, err)
		return
	}
	u, _ := url.Parse(back) // checked by ssoRedirect
	uq := u.Query()
	uq.Set("loginToken", token)
	u.RawQuery = uq.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func pscReason(err error) string {
	for _, c := range []struct {
		err  error
		code policy.Code
	}{
		{psc.ErrUnknownState, policy.PSCUnknownState}, {psc.ErrWrongACR, policy.PSCWrongACR},
		{psc.ErrBadNonce, policy.PSCBadNonce}, {psc.ErrBadIDNat, policy.PSCBadIDNat},
		{psc.ErrInvalidToken, policy.PSCInvalidToken}, {psc.ErrProvider, policy.PSCProviderError},
	} {
		if errors.Is(err, c.err) {
			return string(c.code)
		}
	}
	return string(policy.PSCError)
}

// tokenLogin is m.login.token: the second half of SSO.
func (a *API) tokenLogin(w http.ResponseWriter, r *http.Request, req loginRequest) {
	if req.Token == "" {
		writeErr(w, MMissingParam.WithMessage("token is required"))
		return
	}
	lp, err := a.st.TakeLoginToken(r.Context(), identity.HashToken(req.Token), time.Now())
	if errors.Is(err, store.ErrNotFound) {
		a.forbid(w, r, policy.LoginTokenInvalid, "login.token", "", mautrix.MForbidden.WithMessage("Invalid or expired login token"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	a.admitAndStart(w, r, lp, "login.token", req)
}

// admitAndStart checks the trust space once more (the directory may have
// changed since the password or SSO check) and opens the session.
func (a *API) admitAndStart(w http.ResponseWriter, r *http.Request, localpart, action string, req loginRequest) {
	uid := a.ids.UserID(localpart)
	if err := a.ids.Admit(uid); err != nil {
		if ref, ok := policy.AsRefusal(err); ok {
			a.audit(r, AuditEvent{Actor: string(uid), Action: action, Reason: string(ref.Code)})
			writeErr(w, forbidden(ref))
			return
		}
		a.internal(w, r, err)
		return
	}
	a.audit(r, AuditEvent{Actor: string(uid), Action: action, Allowed: true})
	a.startSession(w, r, localpart, id.DeviceID(req.DeviceID), req.InitialDeviceDisplayName)
}
