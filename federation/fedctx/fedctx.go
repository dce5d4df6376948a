// Package fedctx is the small contract between the federation packages
// (transport, inbound, sender) so that each can be built and tested on
// its own: who is calling (the authenticated origin server), and the
// routes a package asks the federation listener to serve.
package fedctx

import (
	"context"
	"net/http"
)

type originKey struct{}

// WithOrigin returns ctx carrying the server name that authenticated the
// request (the X-Matrix origin, after its signature was checked and the
// server was found in the trust space's list).
func WithOrigin(ctx context.Context, server string) context.Context {
	return context.WithValue(ctx, originKey{}, server)
}

// Origin is the authenticated origin server of a federation request, or
// "" when the request was not authenticated (key server, version).
func Origin(ctx context.Context) string {
	s, _ := ctx.Value(originKey{}).(string)
	return s
}

// Route is one endpoint a federation package asks the listener to serve.
// Pattern is an http.ServeMux pattern without the method, for example
// "/_matrix/federation/v1/send/{txnID}". Unless Public is set, the
// listener serves the route only to requests whose X-Matrix signature
// verifies and whose origin is allowed, and puts the origin in the
// request's context (Origin).
type Route struct {
	Method  string
	Pattern string
	Handler http.Handler
	Public  bool
}
