package httpapi

import (
	"context"
	"crypto/rand"
	"net/http"
	"regexp"

	"github.com/eimis-hub/eimis/internal/door"
)

// RequestIDHeader carries a request's ID, from the reverse proxy and back
// in the answer.
const RequestIDHeader = "X-Request-Id"

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// WithRequestID gives every request an ID (a well-formed X-Request-Id from
// the reverse proxy, or a new one), echoes it in the response and puts it
// in the context (door.RequestID), so an audit entry can be matched with
// proxy logs. Until a door authenticates the request, it is an anonymous
// Client-Server API request (door "client"); the APIs' authentication
// replaces that door with the one the request proves.
func WithRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := r.Header.Get(RequestIDHeader)
		if !validRequestID.MatchString(rid) {
			rid = rand.Text()[:20]
		}
		w.Header().Set(RequestIDHeader, rid)
		ctx := door.With(door.WithRequestID(r.Context(), rid), door.Of(door.Client, ""))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// RequestID is the ID WithRequestID gave the request, or "".
func RequestID(ctx context.Context) string { return door.RequestID(ctx) }
