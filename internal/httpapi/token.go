package httpapi

import (
	"net/http"
	"strings"
)

// AccessToken is the request's access token as the Client-Server API
// takes it: "Authorization: Bearer <token>", or else the access_token
// query parameter (deprecated by the spec, still used by clients). An
// Authorization header of another scheme gives "", never the query's.
func AccessToken(r *http.Request) string {
	if r.Header.Get("Authorization") != "" {
		return BearerToken(r)
	}
	return r.URL.Query().Get("access_token")
}

// BearerToken is the token of the request's "Authorization: Bearer"
// header, or "": the only place the admin API, the appservice bindings
// and bridge tokens are taken from. A token in the URL ends up in proxy
// logs and browser history.
func BearerToken(r *http.Request) string {
	t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(t)
}

// TokenInURL reports whether the request carries an access token in its
// URL, which the APIs that take header tokens only refuse outright.
func TokenInURL(r *http.Request) bool { return r.URL.Query().Has("access_token") }
