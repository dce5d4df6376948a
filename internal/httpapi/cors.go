package httpapi

import (
	"net/http"
	"strings"
)

// CORSOpen reports whether browsers from other origins may call path: the
// Matrix APIs (as the spec requires of homeservers) and the
// practitioners' own API under /_eimis/client/, but none of the hub's
// other paths under /_eimis/ (the admin API, the bridge socket, probes
// and the Pro Santé Connect callback): they are no Matrix
// endpoints, and a page a server admin happens to visit must not be able
// to drive the admin API with a token it got hold of.
func CORSOpen(path string) bool {
	return !strings.HasPrefix(path, "/_eimis/") || strings.HasPrefix(path, "/_eimis/client/")
}

// WithCORS lets browser clients (Element Web) call the paths CORSOpen
// opens, and answers their preflight requests; the other paths get no
// CORS header, so browsers refuse other origins' calls. The APIs open to
// browsers take bearer tokens only, never cookies. Every JSON answer is
// written by internal/httpjson, which adds no CORS header of its own:
// this is the one place CORS is decided.
func WithCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !CORSOpen(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}
