package clientapi

import (
	"net/http"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/identity"
)

// routes registers every endpoint. Client paths are served under both v3
// and the legacy r0 prefix, which older tooling still calls.
func (a *API) routes(mux *http.ServeMux) {
	c := func(method, path string, h http.HandlerFunc) {
		for _, v := range []string{"v3", "r0"} {
			mux.HandleFunc(method+" /_matrix/client/"+v+path, h)
		}
	}
	c1 := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" /_matrix/client/v1"+path, h)
	}

	mux.HandleFunc("GET /_matrix/client/versions", a.versions)
	mux.HandleFunc("GET /.well-known/matrix/client", a.wellKnown)
	mux.HandleFunc("GET /_eimis/health", a.health)
	mux.HandleFunc("GET /_eimis/ready", a.readiness)
	mux.HandleFunc("GET /_synapse/admin/v1/register", a.sharedSecretNonce)
	mux.HandleFunc("POST /_synapse/admin/v1/register", a.sharedSecretRegister)

	// Accounts and sessions.
	c("GET", "/login", a.loginFlows)
	c("POST", "/login", a.login)
	c("GET", "/login/sso/redirect", a.ssoRedirect)
	c("GET", "/login/sso/redirect/{idpId}", a.ssoRedirect)
	mux.HandleFunc("GET "+PSCCallbackPath, a.pscCallback)
	c("POST", "/logout", a.auth(a.logout))
	c("POST", "/logout/all", a.auth(a.logoutAll))
	c("POST", "/register", a.register)
	c("GET", "/register/available", a.registerAvailable)
	c("GET", "/account/whoami", a.auth(a.whoami))
	c1("POST", "/appservice/{appserviceId}/ping", a.auth(a.appservicePing))
	c("GET", "/account/3pid", a.auth(a.threepids))
	c("GET", "/capabilities", a.auth(a.capabilities))
	c("GET", "/devices", a.auth(a.listDevices))
	c("GET", "/devices/{deviceId}", a.auth(a.getDevice))
	c("PUT", "/devices/{deviceId}", a.auth(a.putDevice))
	c("GET", "/profile/{userId}", a.optionalAuth(a.getProfile))
	c("GET", "/profile/{userId}/{field}", a.optionalAuth(a.getProfileField))
	c("PUT", "/profile/{userId}/{field}", act(audit.ActionProfileUpdate, a.auth(a.putProfileField)))

	// Client configuration.
	c("GET", "/pushrules/{rest...}", a.auth(a.pushRules))
	c("PUT", "/pushrules/{rest...}", a.auth(a.acceptEmpty))
	c("DELETE", "/pushrules/{rest...}", a.auth(a.acceptEmpty))
	c("POST", "/user/{userId}/filter", a.auth(a.postFilter))
	c("GET", "/user/{userId}/filter/{filterId}", a.auth(a.getFilter))
	c("GET", "/user/{userId}/account_data/{type}", a.auth(a.getAccountData))
	c("PUT", "/user/{userId}/account_data/{type}", a.auth(a.putAccountData))
	c("GET", "/user/{userId}/rooms/{roomId}/account_data/{type}", a.auth(a.getAccountData))
	c("PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}", a.auth(a.putAccountData))
	c("GET", "/user/{userId}/rooms/{roomId}/tags", a.auth(a.getTags))
	c("PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}", a.auth(a.putTag))
	c("DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}", a.auth(a.deleteTag))

	// Sync and reading.
	c("GET", "/sync", a.auth(a.syncHandler))
	c("GET", "/joined_rooms", a.auth(a.joinedRooms))
	c("GET", "/rooms/{roomId}/messages", a.auth(a.messages))
	c("GET", "/rooms/{roomId}/state", a.auth(a.getState))
	c("GET", "/rooms/{roomId}/state/{type}", a.auth(a.getStateEvent))
	c("GET", "/rooms/{roomId}/state/{type}/{stateKey...}", a.auth(a.getStateEvent))
	c("GET", "/rooms/{roomId}/members", a.auth(a.members))
	c("GET", "/rooms/{roomId}/joined_members", a.auth(a.joinedMembers))
	c("GET", "/rooms/{roomId}/event/{eventId}", a.auth(a.getEvent))
	c("GET", "/rooms/{roomId}/context/{eventId}", a.auth(a.eventContext))

	// Writing.
	c("POST", "/createRoom", act(audit.ActionRoomCreate, a.auth(a.createRoom)))
	c("PUT", "/rooms/{roomId}/send/{type}/{txnId}", act(audit.ActionEventSend, a.auth(a.send)))
	c("PUT", "/rooms/{roomId}/state/{type}", act(audit.ActionEventSend, a.auth(a.putState)))
	c("PUT", "/rooms/{roomId}/state/{type}/{stateKey...}", act(audit.ActionEventSend, a.auth(a.putState)))
	c("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", act(audit.ActionEventRedact, a.auth(a.redact)))
	c("POST", "/rooms/{roomId}/invite", act(audit.ActionRoomInvite, a.auth(a.invite)))
	c("POST", "/rooms/{roomId}/join", act(audit.ActionRoomJoin, a.auth(a.joinRoom)))
	c("POST", "/join/{roomIdOrAlias}", act(audit.ActionRoomJoin, a.auth(a.joinRoom)))
	c("POST", "/rooms/{roomId}/leave", act(audit.ActionRoomLeave, a.auth(a.leave)))
	c("POST", "/rooms/{roomId}/forget", a.auth(a.forget))
	c("POST", "/rooms/{roomId}/kick", act(audit.ActionRoomKick, a.auth(a.kick)))
	c("POST", "/rooms/{roomId}/ban", act(audit.ActionRoomBan, a.auth(a.ban)))
	c("POST", "/rooms/{roomId}/unban", act(audit.ActionRoomUnban, a.auth(a.unban)))
	c("PUT", "/rooms/{roomId}/typing/{userId}", a.auth(a.typing))
	c("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", a.auth(a.receipt))
	c("POST", "/rooms/{roomId}/read_markers", a.auth(a.readMarkers))
	c("GET", "/directory/room/{alias}", a.getAlias)
	c("PUT", "/directory/room/{alias}", a.auth(a.putAlias))
	c("DELETE", "/directory/room/{alias}", a.auth(a.deleteAlias))
	c("GET", "/rooms/{roomId}/aliases", a.auth(a.roomAliases))
	c("POST", "/user_directory/search", a.auth(a.userDirectorySearch))

	// What Element calls but the hub does not do (yet): the spec's empty
	// answers, so clients carry on instead of failing on a 404.
	c("POST", "/keys/upload", a.stub(`{"one_time_key_counts":{"signed_curve25519":0}}`))
	c("POST", "/keys/query", a.stub(`{"device_keys":{},"failures":{},"master_keys":{},"self_signing_keys":{},"user_signing_keys":{}}`))
	c("POST", "/keys/claim", a.stub(`{"one_time_keys":{},"failures":{}}`))
	c("GET", "/keys/changes", a.stub(`{"changed":[],"left":[]}`))
	c("POST", "/keys/device_signing/upload", a.stub(`{}`))
	c("POST", "/keys/signatures/upload", a.stub(`{"failures":{}}`))
	c("GET", "/room_keys/version", a.auth(a.noBackup))
	c("GET", "/voip/turnServer", a.stub(`{}`))
	c("GET", "/pushers", a.stub(`{"pushers":[]}`))
	c("POST", "/pushers/set", a.stub(`{}`))
	c("GET", "/notifications", a.stub(`{"notifications":[]}`))
	c("GET", "/presence/{userId}/status", a.stub(`{"presence":"offline"}`))
	c("PUT", "/presence/{userId}/status", a.stub(`{}`))
	c("PUT", "/sendToDevice/{type}/{txnId}", a.stub(`{}`))
	c("GET", "/thirdparty/protocols", a.stub(`{}`))
	c("GET", "/publicRooms", a.static(`{"chunk":[],"total_room_count_estimate":0}`))
	c("POST", "/publicRooms", a.stub(`{"chunk":[],"total_room_count_estimate":0}`))
	c1("GET", "/rooms/{roomId}/relations/{rest...}", a.auth(a.relations))
	c1("GET", "/rooms/{roomId}/threads", a.stub(`{"chunk":[]}`))

	mux.HandleFunc("/", a.unrecognized)
}

// stub answers an authenticated request with a fixed JSON body.
func (a *API) stub(body string) http.HandlerFunc {
	return a.auth(func(w http.ResponseWriter, r *http.Request, _ identity.Session) { a.static(body)(w, r) })
}

// static answers with a fixed JSON body.
func (a *API) static(body string) http.HandlerFunc {
	b := []byte(body + "\n")
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
}
