package inbound

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/internal/httpjson"
)

// Routes are the endpoints this package serves; the federation listener
// authenticates them (X-Matrix) and puts the origin in the context.
func (s *Server) Routes() []fedctx.Route {
	h := func(method, pattern string, fn http.HandlerFunc) fedctx.Route {
		return fedctx.Route{Method: method, Pattern: pattern, Handler: fn}
	}
	return []fedctx.Route{
		h(http.MethodPut, "/_matrix/federation/v1/send/{txnID}", s.handleSend),
		h(http.MethodGet, "/_matrix/federation/v1/make_join/{roomID}/{userID}", s.handleMakeJoin),
		h(http.MethodPut, "/_matrix/federation/v2/send_join/{roomID}/{eventID}", s.handleSendJoin),
		h(http.MethodGet, "/_matrix/federation/v1/make_leave/{roomID}/{userID}", s.handleMakeLeave),
		h(http.MethodPut, "/_matrix/federation/v2/send_leave/{roomID}/{eventID}", s.handleSendLeave),
		h(http.MethodPut, "/_matrix/federation/v2/invite/{roomID}/{eventID}", s.handleInvite),
		h(http.MethodGet, "/_matrix/federation/v1/backfill/{roomID}", s.handleBackfill),
		h(http.MethodPost, "/_matrix/federation/v1/get_missing_events/{roomID}", s.handleGetMissingEvents),
		h(http.MethodGet, "/_matrix/federation/v1/state/{roomID}", s.handleState),
		h(http.MethodGet, "/_matrix/federation/v1/state_ids/{roomID}", s.handleStateIDs),
		h(http.MethodGet, "/_matrix/federation/v1/event/{eventID}", s.handleEvent),
		h(http.MethodGet, "/_matrix/federation/v1/event_auth/{roomID}/{eventID}", s.handleEventAuth),
		h(http.MethodGet, "/_matrix/federation/v1/query/profile", s.handleQueryProfile),
		h(http.MethodGet, "/_matrix/federation/v1/query/directory", s.handleQueryDirectory),
	}
}

// Handler serves Routes on one mux (tests, and a listener that mounts a
// single handler). It trusts the origin already in the context.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.Routes() {
		mux.Handle(r.Method+" "+r.Pattern, r.Handler)
	}
	return mux
}

func writeErr(w http.ResponseWriter, e mautrix.RespError) { httpjson.Error(w, e) }

func writeJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }

func writeRaw(w http.ResponseWriter, status int, raw json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

func internal(log *slog.Logger, w http.ResponseWriter, err error) {
	log.Error("federation request failed", "err", err)
	writeErr(w, mautrix.MUnknown.WithStatus(http.StatusInternalServerError).WithMessage("Internal error"))
}

// origin is the request's authenticated origin; false (and a 401 written)
// when there is none.
func origin(w http.ResponseWriter, r *http.Request) (string, bool) {
	o := fedctx.Origin(r.Context())
	if o == "" {
		writeErr(w, mautrix.MForbidden.WithStatus(http.StatusUnauthorized).WithMessage("The request is not signed"))
		return "", false
	}
	return o, true
}
