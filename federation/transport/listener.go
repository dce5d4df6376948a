package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"

	"github.com/eimis-hub/eimis/federation/fedctx"
)

// VersionRoute is GET /_matrix/federation/v1/version, public.
func VersionRoute(name, version string) fedctx.Route {
	return fedctx.Route{Method: http.MethodGet, Pattern: "/_matrix/federation/v1/version", Public: true,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, federation.RespServerVersion{Server: federation.ServerVersion{Name: name, Version: version}})
		})}
}

// Handler mounts routes: public ones as they are, every other one behind
// auth. Two routes with the same method and pattern are a programming
// error, reported rather than panicking in http.ServeMux.
func Handler(auth *Authenticator, routes []fedctx.Route) (http.Handler, error) {
	mux := http.NewServeMux()
	seen := map[string]bool{}
	for _, rt := range routes {
		if rt.Handler == nil || rt.Pattern == "" || rt.Method == "" {
			return nil, fmt.Errorf("federation route %q %q: method, pattern and handler are required", rt.Method, rt.Pattern)
		}
		p := rt.Method + " " + rt.Pattern
		if seen[p] {
			return nil, fmt.Errorf("federation route %s mounted twice", p)
		}
		seen[p] = true
		h := rt.Handler
		if !rt.Public {
			h = auth.Wrap(h)
		}
		mux.Handle(p, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		mautrix.MUnrecognized.WithMessage("unrecognized federation endpoint").Write(w)
	})
	return mux, nil
}

// Serve serves h over TLS on ln, with the certificate cert, until ctx
// ends; then it shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, cert tls.Certificate) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
