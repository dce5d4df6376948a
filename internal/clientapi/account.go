package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/ratelimit"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// SpecVersions are the Client-Server API versions advertised. The hub
// serves the endpoints these versions need for everyday chat; mautrix
// bridgev2 asks for at least v1.4.
var SpecVersions = []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"}

func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	unstable := map[string]bool{"org.matrix.msc3916.stable": true}
	if a.appservices != nil {
		// MSC2659's flag for POST /_matrix/client/v1/appservice/{id}/ping
		// on a server advertising a version older than v1.7, where it
		// became stable: mautrix bridges check the hub -> bridge link with
		// it at start-up.
		unstable["fi.mau.msc2659.stable"] = true
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": SpecVersions, "unstable_features": unstable})
}

func (a *API) wellKnown(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"m.homeserver": map[string]string{"base_url": a.cfg.PublicBaseURL}})
}

type loginRequest struct {
	Type       string `json:"type"`
	Identifier struct {
		Type string `json:"type"`
		User string `json:"user"`
	} `json:"identifier"`
	User                     string `json:"user"`
	Password                 string `json:"password"`
	Token                    string `json:"token"`
	DeviceID                 string `json:"device_id"`
	InitialDeviceDisplayName string `json:"initial_device_display_name"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	// Appservices log their users in under their operator's limit.
	if req.Type != string(mautrix.AuthTypeAppservice) && !a.limitAddress(w, r, ratelimit.LoginAddress, "login") {
		return
	}
	if req.Type == "m.login.token" && a.trust.SSO != nil {
		a.tokenLogin(w, r, req)
		return
	}
	if req.Type == string(mautrix.AuthTypeAppservice) && a.appservices != nil {
		a.appserviceLogin(w, r, req)
		return
	}
	if req.Type != "m.login.password" {
		writeErr(w, mautrix.MUnknown.WithStatus(http.StatusBadRequest).WithMessage("Unsupported login type %q", req.Type))
		return
	}
	user := req.Identifier.User
	if user == "" {
		user = req.User
	}
	if req.Identifier.Type != "" && req.Identifier.Type != "m.id.user" {
		writeErr(w, mautrix.MUnknown.WithStatus(http.StatusBadRequest).WithMessage("Unsupported identifier type %q", req.Identifier.Type))
		return
	}
	localpart := user
	if strings.HasPrefix(user, "@") {
		lp, err := a.ids.LocalpartOf(id.UserID(user))
		if err != nil {
			a.loginFailed(r, "")
			writeErr(w, mautrix.MForbidden.WithMessage("Invalid username or password"))
			return
		}
		localpart = lp
	}
	if !a.limitLogin(w, r, localpart) {
		return
	}
	if _, err := a.ids.CheckPassword(r.Context(), localpart, req.Password); errors.Is(err, identity.ErrBadCredentials) {
		a.loginFailed(r, localpart)
		writeErr(w, mautrix.MForbidden.WithMessage("Invalid username or password"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	a.limits.LoginSucceeded(accountKey(localpart))
	a.admitAndStart(w, r, strings.ToLower(localpart), "login", req)
}

func (a *API) startSession(w http.ResponseWriter, r *http.Request, localpart string, deviceID id.DeviceID, displayName string) {
	token, dev, err := a.ids.NewSession(r.Context(), localpart, deviceID, displayName)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user_id":      a.ids.UserID(localpart),
		"access_token": token,
		"device_id":    dev,
		"home_server":  a.cfg.ServerName,
		"well_known":   map[string]any{"m.homeserver": map[string]string{"base_url": a.cfg.PublicBaseURL}},
	})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if err := a.ids.Logout(r.Context(), s); err != nil {
		a.internal(w, r, err)
		return
	}
	a.audit(r, AuditEvent{Actor: string(s.UserID), Action: "logout", Target: string(s.DeviceID), Allowed: true})
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) logoutAll(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if err := a.ids.LogoutAll(r.Context(), s); err != nil {
		a.internal(w, r, err)
		return
	}
	a.audit(r, AuditEvent{Actor: string(s.UserID), Action: "logout", Target: "all devices", Allowed: true})
	writeJSON(w, http.StatusOK, map[string]any{})
}

type registerRequest struct {
	// Type is set (at the top level, not in auth) by an appservice
	// registering one of its users: m.login.application_service.
	Type     string `json:"type"`
	Username string `json:"username"`
	Password string `json:"password"`
	DeviceID string `json:"device_id"`
	Auth     *struct {
		Type    string `json:"type"`
		Session string `json:"session"`
	} `json:"auth"`
	InitialDeviceDisplayName string `json:"initial_device_display_name"`
	InhibitLogin             bool   `json:"inhibit_login"`
}

// register is open self-registration, off by default: accounts on a health
// hub are provisioned, not self-declared.
func (a *API) register(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("kind") == "guest" {
		writeErr(w, MGuestAccessForbidden.WithMessage("Guest access is disabled"))
		return
	}
	var req registerRequest
	if e := decodeJSON(r, &req); e != nil {
		if !a.cfg.EnableRegistration {
			writeErr(w, mautrix.MForbidden.WithMessage("Registration is disabled on this server"))
			return
		}
		writeErr(w, *e)
		return
	}
	// Appservices register their users whether or not registration is
	// open: that is how a bridge creates its puppets.
	if req.Type == string(mautrix.AuthTypeAppservice) && a.appservices != nil {
		a.appserviceRegister(w, r, req)
		return
	}
	if !a.cfg.EnableRegistration {
		writeErr(w, mautrix.MForbidden.WithMessage("Registration is disabled on this server"))
		return
	}
	if req.Auth == nil || req.Auth.Type != "m.login.dummy" {
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"flows":   []map[string]any{{"stages": []string{"m.login.dummy"}}},
			"params":  map[string]any{},
			"session": identity.RandomString(24),
		})
		return
	}
	if !a.limitAddress(w, r, ratelimit.Registration, "account.create") {
		return
	}
	if req.Username == "" {
		req.Username = strings.ToLower(identity.RandomString(12))
	}
	a.createAndLogin(w, r, req.Username, req.Password, false, id.DeviceID(req.DeviceID), req.InitialDeviceDisplayName, req.InhibitLogin)
}

func (a *API) createAndLogin(w http.ResponseWriter, r *http.Request, username, password string, admin bool, dev id.DeviceID, devName string, inhibit bool) {
	if a.appservices != nil {
		// An exclusive namespace is the appservice's alone (spec).
		if asID, ok := a.appservices.Exclusive(a.ids.UserID(strings.ToLower(username))); ok {
			writeErr(w, mautrix.MExclusive.WithMessage("This user ID is reserved by application service %s", asID))
			return
		}
	}
	userID, err := a.ids.CreateAccount(r.Context(), username, password, admin)
	if ref, ok := policy.AsRefusal(err); ok {
		a.audit(r, AuditEvent{Actor: string(a.ids.UserID(strings.ToLower(username))), Action: "account.create", Reason: string(ref.Code)})
		writeErr(w, forbidden(ref))
		return
	}
	if err == nil {
		a.audit(r, AuditEvent{Actor: string(userID), Action: "account.create", Allowed: true})
	}
	switch {
	case errors.Is(err, identity.ErrUserExists):
		writeErr(w, mautrix.MUserInUse.WithMessage("User ID already taken"))
		return
	case errors.Is(err, identity.ErrInvalidLocalpart):
		writeErr(w, mautrix.MInvalidUsername.WithMessage("%s", err.Error()))
		return
	case err != nil:
		a.internal(w, r, err)
		return
	}
	if inhibit {
		writeJSON(w, http.StatusOK, map[string]any{"user_id": userID, "home_server": a.cfg.ServerName})
		return
	}
	a.startSession(w, r, strings.ToLower(username), dev, devName)
}

func (a *API) registerAvailable(w http.ResponseWriter, r *http.Request) {
	lp := strings.ToLower(r.URL.Query().Get("username"))
	if err := identity.ValidateLocalpart(lp); err != nil {
		writeErr(w, mautrix.MInvalidUsername.WithMessage("%s", err.Error()))
		return
	}
	if a.appservices != nil {
		if asID, ok := a.appservices.Exclusive(a.ids.UserID(lp)); ok {
			writeErr(w, mautrix.MExclusive.WithMessage("This user ID is reserved by application service %s", asID))
			return
		}
	}
	if a.cfg.ProfileRequiresAuth {
		// The answer must not depend on whether the account exists, or
		// anyone could list who works with the hub. Closed registration
		// says so for every name; open registration says "available"
		// for every valid name, as Synapse's inhibit_user_in_use_error
		// does, so Element's sign-up form carries on and a taken name is
		// refused at POST /register, where registration is rate-limited.
		if !a.cfg.EnableRegistration {
			writeErr(w, mautrix.MForbidden.WithMessage("Registration is disabled on this server"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"available": true})
		return
	}
	if _, err := a.st.GetAccount(r.Context(), lp); err == nil {
		writeErr(w, mautrix.MUserInUse.WithMessage("User ID already taken"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"available": true})
}

func (a *API) sharedSecretNonce(w http.ResponseWriter, r *http.Request) {
	if a.shared == nil {
		writeErr(w, mautrix.MForbidden.WithMessage("Shared secret registration is not enabled"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"nonce": a.shared.Nonce()})
}

func (a *API) sharedSecretRegister(w http.ResponseWriter, r *http.Request) {
	if a.shared == nil {
		writeErr(w, mautrix.MForbidden.WithMessage("Shared secret registration is not enabled"))
		return
	}
	var req struct {
		Nonce       string `json:"nonce"`
		Username    string `json:"username"`
		Password    string `json:"password"`
		Admin       bool   `json:"admin"`
		DisplayName string `json:"displayname"`
		MAC         string `json:"mac"`
	}
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	if req.Nonce == "" || req.Username == "" || req.MAC == "" {
		writeErr(w, MMissingParam.WithMessage("nonce, username and mac are required"))
		return
	}
	if err := a.shared.Verify(req.Nonce, req.Username, req.Password, req.Admin, req.MAC); err != nil {
		a.forbid(w, r, policy.LoginTokenInvalid, audit.ActionAccountCreate, "",
			mautrix.MForbidden.WithMessage("%s", err.Error()))
		return
	}
	a.createAndLogin(w, r, req.Username, req.Password, req.Admin, "", "", false)
}

// whoami answers for the session's user: with an as_token, the user the
// appservice acts as (?user_id=), which has no device.
func (a *API) whoami(w http.ResponseWriter, r *http.Request, s identity.Session) {
	resp := map[string]any{"user_id": s.UserID, "is_guest": false}
	if s.DeviceID != "" {
		resp["device_id"] = s.DeviceID
	}
	writeJSON(w, http.StatusOK, resp)
}

// appserviceToken identifies the appservice calling /login or /register
// with its as_token, writing the spec's 401 when it is not one.
func (a *API) appserviceToken(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok := httpapi.AccessToken(r)
	if tok == "" {
		writeErr(w, mautrix.MMissingToken.WithMessage("Missing access token: an application service authenticates with its as_token"))
		return "", false
	}
	asID, ok := a.appservices.Owner(tok)
	if !ok {
		writeErr(w, mautrix.MUnknownToken.WithMessage("Unknown application service token"))
		return "", false
	}
	return asID, true
}

// appserviceRegister is POST /register with type m.login.application_service:
// an appservice creates one of its users (a bridge's puppet or bot). The
// trust space decides as for any account: a puppet must stand for an
// authorised practitioner.
func (a *API) appserviceRegister(w http.ResponseWriter, r *http.Request, req registerRequest) {
	asID, ok := a.appserviceToken(w, r)
	if !ok {
		return
	}
	r = r.WithContext(door.With(r.Context(), door.Of(door.Appservice, asID)))
	if err := identity.ValidateLocalpart(req.Username); err != nil {
		writeErr(w, mautrix.MInvalidUsername.WithMessage("%s", err.Error()))
		return
	}
	uid := a.ids.UserID(req.Username)
	if !a.appservices.Owns(asID, uid) {
		writeErr(w, mautrix.MExclusive.WithMessage("%s is not in the exclusive user namespaces of application service %s", uid, asID))
		return
	}
	if !a.limitAppservice(w, r, asID, ratelimit.Registration, 1, door.Refusal{Action: "account.create", Actor: string(uid)}) {
		return
	}
	userID, err := a.ids.CreateAccount(r.Context(), req.Username, "", false)
	if ref, ok := policy.AsRefusal(err); ok {
		a.audit(r, AuditEvent{Actor: string(uid), Action: "account.create", Reason: string(ref.Code)})
		writeErr(w, forbidden(ref))
		return
	}
	switch {
	case errors.Is(err, identity.ErrUserExists):
		writeErr(w, mautrix.MUserInUse.WithMessage("User ID already taken"))
		return
	case err != nil:
		a.internal(w, r, err)
		return
	}
	a.audit(r, AuditEvent{Actor: string(userID), Action: "account.create", Allowed: true})
	if req.InhibitLogin {
		writeJSON(w, http.StatusOK, map[string]any{"user_id": userID, "home_server": a.cfg.ServerName})
		return
	}
	a.startSession(w, r, req.Username, id.DeviceID(req.DeviceID), req.InitialDeviceDisplayName)
}

// appserviceLogin is m.login.application_service: an appservice obtains
// an ordinary access token (a device) for one of its users.
func (a *API) appserviceLogin(w http.ResponseWriter, r *http.Request, req loginRequest) {
	asID, ok := a.appserviceToken(w, r)
	if !ok {
		return
	}
	r = r.WithContext(door.With(r.Context(), door.Of(door.Appservice, asID)))
	user := req.Identifier.User
	if user == "" {
		user = req.User
	}
	uid := id.UserID(user)
	if !strings.HasPrefix(user, "@") {
		uid = a.ids.UserID(user)
	}
	lp, err := a.ids.LocalpartOf(uid)
	if err != nil || !a.appservices.Owns(asID, uid) {
		a.forbid(w, r, policy.ActingForAnother, "login", string(uid),
			mautrix.MForbidden.WithMessage("%s is not a user application service %s may log in", uid, asID))
		return
	}
	if !a.limitAppservice(w, r, asID, ratelimit.LoginAccount, 1, door.Refusal{Action: "login", Actor: string(uid)}) {
		return
	}
	if _, err := a.st.GetAccount(r.Context(), lp); errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MForbidden.WithMessage("%s is not registered", uid))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	a.admitAndStart(w, r, lp, "login", req)
}

// appservicePing is POST /_matrix/client/v1/appservice/{appserviceId}/ping:
// the hub calls the appservice's ping endpoint, so the appservice learns
// whether the hub can reach it.
func (a *API) appservicePing(w http.ResponseWriter, r *http.Request, s identity.Session) {
	asID := r.PathValue("appserviceId")
	if a.appservices == nil || s.Appservice == "" || s.Appservice != asID {
		a.forbid(w, r, policy.ActingForAnother, "appservice.ping", "appservice:"+asID,
			mautrix.MForbidden.WithMessage("Only application service %s may ping itself, with its as_token", asID))
		return
	}
	var req struct {
		TransactionID string `json:"transaction_id"`
	}
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	took, err := a.appservices.Ping(r.Context(), asID, req.TransactionID)
	if err != nil {
		a.appserviceErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"duration_ms": took.Milliseconds()})
}

func (a *API) threepids(w http.ResponseWriter, r *http.Request, s identity.Session) {
	writeJSON(w, http.StatusOK, map[string]any{"threepids": []any{}})
}

func (a *API) capabilities(w http.ResponseWriter, r *http.Request, s identity.Session) {
	available := map[string]string{}
	for _, v := range rooms.SupportedVersions {
		available[string(v)] = "stable"
	}
	writeJSON(w, http.StatusOK, map[string]any{"capabilities": map[string]any{
		"m.change_password": map[string]bool{"enabled": false},
		"m.room_versions":   map[string]any{"default": a.rooms.DefaultVersion(), "available": available},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
	}})
}

func deviceJSON(d store.Device) map[string]any {
	return map[string]any{"device_id": d.DeviceID, "display_name": d.DisplayName, "last_seen_ts": d.LastSeen.UnixMilli()}
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request, s identity.Session) {
	devs, err := a.st.ListDevices(r.Context(), s.UserID.Localpart())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := make([]map[string]any, 0, len(devs))
	for _, d := range devs {
		out = append(out, deviceJSON(d))
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request, s identity.Session) {
	devs, err := a.st.ListDevices(r.Context(), s.UserID.Localpart())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	for _, d := range devs {
		if d.DeviceID == r.PathValue("deviceId") {
			writeJSON(w, http.StatusOK, deviceJSON(d))
			return
		}
	}
	writeErr(w, mautrix.MNotFound.WithMessage("Unknown device"))
}

func (a *API) putDevice(w http.ResponseWriter, r *http.Request, s identity.Session) {
	var req struct {
		DisplayName string `json:"display_name"`
	}
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	devs, err := a.st.ListDevices(r.Context(), s.UserID.Localpart())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	for _, d := range devs {
		if d.DeviceID == r.PathValue("deviceId") {
			d.DisplayName = req.DisplayName
			if err := a.st.CreateDevice(r.Context(), d); err != nil {
				a.internal(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{})
			return
		}
	}
	writeErr(w, mautrix.MNotFound.WithMessage("Unknown device"))
}

func profileJSON(acc *store.Account) map[string]any {
	p := map[string]any{"displayname": safeDisplayName(acc.DisplayName)}
	if av := safeAvatar(acc.AvatarURL); av != "" {
		p["avatar_url"] = av
	}
	return p
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request, s *identity.Session) {
	acc, ok := a.visibleProfile(w, r, s, r.PathValue("userId"))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, profileJSON(acc))
}

func (a *API) getProfileField(w http.ResponseWriter, r *http.Request, s *identity.Session) {
	acc, ok := a.visibleProfile(w, r, s, r.PathValue("userId"))
	if !ok {
		return
	}
	field := r.PathValue("field")
	v, ok := profileJSON(acc)[field]
	if !ok {
		writeErr(w, mautrix.MNotFound.WithMessage("Profile field not set"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{field: v})
}

func (a *API) putProfileField(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if r.PathValue("userId") != string(s.UserID) {
		a.forbid(w, r, policy.ActingForAnother, audit.ActionProfileUpdate, r.PathValue("userId"),
			mautrix.MForbidden.WithMessage("You cannot change another user's profile"))
		return
	}
	field := r.PathValue("field")
	var body map[string]any
	if e := decodeJSON(r, &body); e != nil {
		writeErr(w, *e)
		return
	}
	if field != "displayname" && field != "avatar_url" {
		writeErr(w, mautrix.MForbidden.WithMessage("Profile field %q cannot be set", field))
		return
	}
	var val string
	switch v := body[field].(type) {
	case string:
		val = v
	case nil:
		if _, present := body[field]; !present {
			writeErr(w, MMissingParam.WithMessage("%s is required", field))
			return
		}
	default:
		writeErr(w, mautrix.MBadJSON.WithMessage("%s must be a string", field))
		return
	}
	if e := checkProfileValue(field, val); e != nil {
		writeErr(w, *e)
		return
	}
	lp := s.UserID.Localpart()
	if field == "displayname" && a.trust.Policy != nil {
		if name, ok := a.trust.Policy.DisplayName(s.UserID); ok && val != name {
			ref := &policy.Refusal{Code: policy.DisplayNameLocked, Subject: string(s.UserID)}
			a.audit(r, AuditEvent{Actor: string(s.UserID), Action: "profile.update", Target: string(s.UserID), Reason: string(ref.Code)})
			writeErr(w, forbidden(ref))
			return
		}
	}
	var err error
	switch field {
	case "displayname":
		err = a.st.SetDisplayName(r.Context(), lp, val)
	case "avatar_url":
		err = a.st.SetAvatarURL(r.Context(), lp, val)
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	// Rooms show the name carried by the member event, so announce it in
	// every joined room, as other homeservers do.
	mems, err := a.st.UserMemberships(r.Context(), string(s.UserID))
	if err != nil {
		a.internal(w, r, err)
		return
	}
	acc, err := a.st.GetAccount(r.Context(), lp)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	for _, m := range mems {
		if m.Membership != "join" {
			continue
		}
		content, _ := json.Marshal(memberContent("join", acc, ""))
		sk := string(s.UserID)
		if _, err := a.rooms.Send(r.Context(), rooms.Submit{
			RoomID: id.RoomID(m.RoomID), Sender: s.UserID, Type: "m.room.member", StateKey: &sk, Content: content,
		}); err != nil {
			a.log.Warn("profile change not announced in room", "room", m.RoomID, errclass.Attr(err))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func memberContent(membership string, acc *store.Account, reason string) map[string]any {
	c := map[string]any{"membership": membership}
	if acc != nil {
		if name := safeDisplayName(acc.DisplayName); name != "" {
			c["displayname"] = name
		}
		if av := safeAvatar(acc.AvatarURL); av != "" {
			c["avatar_url"] = av
		}
	}
	if reason != "" {
		c["reason"] = reason
	}
	return c
}

func (a *API) acceptEmpty(w http.ResponseWriter, r *http.Request, s identity.Session) {
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) noBackup(w http.ResponseWriter, r *http.Request, s identity.Session) {
	writeErr(w, mautrix.MNotFound.WithMessage("No current backup version"))
}

func (a *API) postFilter(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !a.ownUserPath(w, r, s) {
		return
	}
	var f map[string]any
	if e := decodeJSON(r, &f); e != nil {
		writeErr(w, *e)
		return
	}
	raw, _ := json.Marshal(f)
	if _, e := parseFilter(raw); e != nil {
		writeErr(w, *e)
		return
	}
	fid, err := a.st.PutFilter(r.Context(), string(s.UserID), raw)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"filter_id": fid})
}

func (a *API) getFilter(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !a.ownUserPath(w, r, s) {
		return
	}
	f, err := a.st.GetFilter(r.Context(), string(s.UserID), r.PathValue("filterId"))
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("No such filter"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(f)
}

func (a *API) getAccountData(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !a.ownUserPath(w, r, s) {
		return
	}
	ad, err := a.st.GetAccountData(r.Context(), string(s.UserID), r.PathValue("roomId"), r.PathValue("type"))
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("Account data not found"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(ad.Content)
}

func (a *API) putAccountData(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !a.ownUserPath(w, r, s) {
		return
	}
	if use, owned := serverOwnedAccountData[r.PathValue("type")]; owned {
		writeErr(w, mautrix.MBadJSON.WithStatus(http.StatusMethodNotAllowed).WithMessage("Cannot set %s through this API: %s", r.PathValue("type"), use))
		return
	}
	var content map[string]any
	if e := decodeJSON(r, &content); e != nil {
		writeErr(w, *e)
		return
	}
	raw, _ := json.Marshal(content)
	a.setAccountData(w, r, s, r.PathValue("roomId"), r.PathValue("type"), raw)
}

func (a *API) setAccountData(w http.ResponseWriter, r *http.Request, s identity.Session, roomID, typ string, raw json.RawMessage) {
	if _, err := a.st.PutAccountData(r.Context(), store.AccountData{UserID: string(s.UserID), RoomID: roomID, Type: typ, Content: raw}); err != nil {
		a.internal(w, r, err)
		return
	}
	a.sync.Wake("", string(s.UserID))
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) tags(r *http.Request, s identity.Session) (map[string]any, error) {
	ad, err := a.st.GetAccountData(r.Context(), string(s.UserID), r.PathValue("roomId"), "m.tag")
	tags := map[string]any{}
	if errors.Is(err, store.ErrNotFound) {
		return tags, nil
	} else if err != nil {
		return nil, err
	}
	var c struct {
		Tags map[string]any `json:"tags"`
	}
	if json.Unmarshal(ad.Content, &c) == nil && c.Tags != nil {
		tags = c.Tags
	}
	return tags, nil
}

func (a *API) getTags(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !a.ownUserPath(w, r, s) {
		return
	}
	tags, err := a.tags(r, s)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tags": tags})
}

func (a *API) putTag(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !a.ownUserPath(w, r, s) {
		return
	}
	var body map[string]any
	if e := decodeJSON(r, &body); e != nil {
		writeErr(w, *e)
		return
	}
	if order, ok := body["order"]; ok {
		if !isJSONNumber(order) {
			writeErr(w, mautrix.MBadJSON.WithMessage("order must be a number"))
			return
		}
	}
	a.changeTag(w, r, s, body)
}

func (a *API) deleteTag(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !a.ownUserPath(w, r, s) {
		return
	}
	a.changeTag(w, r, s, nil)
}

func (a *API) changeTag(w http.ResponseWriter, r *http.Request, s identity.Session, val map[string]any) {
	tags, err := a.tags(r, s)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if val == nil {
		delete(tags, r.PathValue("tag"))
	} else {
		tags[r.PathValue("tag")] = val
	}
	raw, _ := json.Marshal(map[string]any{"tags": tags})
	a.setAccountData(w, r, s, r.PathValue("roomId"), "m.tag", raw)
}

// userDirectorySearch finds people to talk to. With the trust space it
// answers from the health directory (name, profession, city; an idNat
// finds its practitioner), keeping those who can be reached (who have an
// account here), then adds the organisational accounts whose name
// matches. This is what replaces the EIMIS reference deployment's
// discovery room. Without it, local accounts are searched.
func (a *API) userDirectorySearch(w http.ResponseWriter, r *http.Request, s identity.Session) {
	if !a.limit(w, r, s, ratelimit.DirectorySearch, 1, door.Refusal{Action: "directory.search"}) {
		return
	}
	var req struct {
		SearchTerm string `json:"search_term"`
		Limit      int    `json:"limit"`
	}
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	if utf8.RuneCountInString(req.SearchTerm) > MaxSearchTermRunes {
		writeErr(w, mautrix.MInvalidParam.WithMessage("search_term is longer than %d characters", MaxSearchTermRunes))
		return
	}
	term := searchTerm(req.SearchTerm)
	if term == "" {
		if strings.TrimSpace(req.SearchTerm) == "" {
			writeErr(w, MMissingParam.WithMessage("search_term is required"))
			return
		}
		// "@", ":" and the like: nothing to look for, and certainly not
		// everyone (an empty term matches every account).
		writeJSON(w, http.StatusOK, map[string]any{"results": []any{}, "limited": false})
		return
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 50)
	type hit struct{ userID, name, avatar string }
	var hits []hit
	seen := map[string]bool{}
	if a.trust.Search != nil {
		found, err := a.reachablePractitioners(r, term, limit+1)
		if err != nil {
			a.internal(w, r, err)
			return
		}
		for _, e := range found {
			seen[e.IDNat] = true
			hits = append(hits, hit{userID: string(a.ids.UserID(e.IDNat)), name: e.DisplayName})
		}
	}
	if len(hits) <= limit {
		accs, err := a.st.SearchAccounts(r.Context(), term, limit+1)
		if err != nil {
			a.internal(w, r, err)
			return
		}
		for _, acc := range accs {
			uid := a.ids.UserID(acc.Localpart)
			if seen[acc.Localpart] || (a.trust.Policy != nil && a.trust.Policy.CheckUser(uid) != nil) {
				continue // already listed, or not someone one can talk to
			}
			seen[acc.Localpart] = true
			hits = append(hits, hit{userID: string(uid), name: acc.DisplayName, avatar: acc.AvatarURL})
		}
	}
	limited := len(hits) > limit
	if limited {
		hits = hits[:limit]
	}
	results := make([]map[string]any, 0, len(hits))
	for _, h := range hits {
		res := map[string]any{"user_id": h.userID, "display_name": h.name}
		if h.avatar != "" {
			res["avatar_url"] = h.avatar
		}
		results = append(results, res)
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results, "limited": limited})
}

// reachablePractitioners returns up to n authorised practitioners matching
// term who have an account, in the directory's ranking. Most of a national
// directory has no account on a given hub, so the directory is asked for
// more candidates in rounds, up to a bound that keeps one search cheap.
func (a *API) reachablePractitioners(r *http.Request, term string, n int) ([]directory.Entry, error) {
	var out []directory.Entry
	for k := 100; ; k *= 10 {
		cands := a.trust.Search(term, k)
		lps := make([]string, len(cands))
		for i, e := range cands {
			lps[i] = e.IDNat
		}
		exist, err := a.st.AccountsExist(r.Context(), lps)
		if err != nil {
			return nil, err
		}
		out = out[:0]
		for _, e := range cands {
			if exist[e.IDNat] && (a.trust.Policy == nil || a.trust.Policy.CheckUser(a.ids.UserID(e.IDNat)) == nil) {
				out = append(out, e)
				if len(out) == n {
					return out, nil
				}
			}
		}
		if len(cands) < k || k >= 10000 {
			return out, nil
		}
	}
}
