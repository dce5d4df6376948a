// Package adminapi serves the hub's administration HTTP API under
// /_eimis/admin/v1/: the operator allow-list (list, register, suspend,
// reactivate, revoke) and the apps' bindings of practitioners (list,
// revoke). Every request must come from a server admin, as decided by an
// Authenticator; errors leave as Matrix error values ({"errcode":…,"error":…}), with the registry's stable refusal
// code as "eimis_code" where one applies. docs/admin-api.md documents it.
package adminapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/httpjson"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/store"
)

// The one way the hub writes JSON answers and Matrix errors.
var (
	writeJSON = httpjson.Write
	writeErr  = httpjson.Error
)

// Prefix is where the API is mounted.
const Prefix = "/_eimis/admin/v1/"

// maxBodyBytes bounds request bodies: an operator with its maximum of
// server names is a few KiB, so anything much larger is not a request.
const maxBodyBytes = 64 << 10

// Authenticator decides whether a request comes from a server admin.
type Authenticator interface {
	// AdminUser returns the Matrix user ID of the admin making r, or an
	// error that is a mautrix.RespError (M_MISSING_TOKEN, M_UNKNOWN_TOKEN,
	// M_FORBIDDEN "not a server admin") written to the client as it is.
	// Any other error is answered as an internal error, and the request is
	// refused all the same.
	AdminUser(r *http.Request) (userID string, err error)
}

// API is the admin API.
type API struct {
	reg      *operators.Registry
	auth     Authenticator
	log      *slog.Logger
	bindings Bindings
}

// Bindings are the practitioners' consents to apps (internal/consent).
type Bindings interface {
	List(ctx context.Context, f store.BindingFilter) ([]store.Binding, error)
	Revoke(ctx context.Context, d door.Door, u id.UserID, actor string) (bool, error)
	Wire(bs []store.Binding) []consent.Binding
}

// SetBindings serves the bindings endpoints; call before Register.
func (a *API) SetBindings(b Bindings) { a.bindings = b }

// New returns the API over a registry; log may be nil.
func New(reg *operators.Registry, auth Authenticator, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{reg: reg, auth: auth, log: log.With("component", "adminapi")}
}

// Register mounts the API on mux. Everything under Prefix is the API's:
// paths it does not know are answered M_UNRECOGNIZED (404, or 405 for a
// known path with another method), after authentication, so that a
// stranger cannot map the API.
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("GET "+Prefix+"operators", a.admin(a.listOperators))
	mux.Handle("POST "+Prefix+"operators", a.admin(a.createOperator))
	mux.Handle("GET "+Prefix+"operators/{id}", a.admin(a.getOperator))
	mux.Handle("POST "+Prefix+"operators/{id}/suspend", a.admin(a.setStatus(a.reg.Suspend)))
	mux.Handle("POST "+Prefix+"operators/{id}/reactivate", a.admin(a.setStatus(a.reg.Reactivate)))
	mux.Handle("POST "+Prefix+"operators/{id}/revoke", a.admin(a.setStatus(a.reg.Revoke)))
	if a.bindings != nil {
		mux.Handle("GET "+Prefix+"bindings", a.admin(a.listBindings))
		mux.Handle("DELETE "+Prefix+"bindings/{door}/{id}/{userId}", a.admin(a.revokeBinding))
	}
	mux.Handle(Prefix, a.admin(a.unrecognized))
}

// listBindings: GET /bindings[?user_id=…][&door=bridge|appservice][&id=…].
func (a *API) listBindings(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	f := store.BindingFilter{Kind: q.Get("door"), AppID: q.Get("id"), UserID: q.Get("user_id")}
	if f.Kind != "" && f.Kind != store.BindingBridge && f.Kind != store.BindingAppservice {
		writeErr(w, mautrix.MInvalidParam.WithMessage("door must be bridge or appservice").WithExtraField("field", "door"))
		return
	}
	bs, err := a.bindings.List(r.Context(), f)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]consent.Binding{"bindings": a.bindings.Wire(bs)})
}

// revokeBinding: DELETE /bindings/{door}/{id}/{userId}. The app loses the
// practitioner at once.
func (a *API) revokeBinding(w http.ResponseWriter, r *http.Request, admin string) {
	d, err := consent.ParseDoor(r.PathValue("door"), r.PathValue("id"))
	if err != nil {
		writeErr(w, mautrix.MNotFound.WithStatus(http.StatusNotFound).WithMessage("no such binding"))
		return
	}
	u := id.UserID(r.PathValue("userId"))
	existed, err := a.bindings.Revoke(r.Context(), d, u, admin)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if !existed {
		writeErr(w, mautrix.MNotFound.WithStatus(http.StatusNotFound).WithMessage("%s does not act for %s", d, u))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

type adminHandler func(w http.ResponseWriter, r *http.Request, admin string)

// admin authenticates every request before its handler runs.
func (a *API) admin(h adminHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if httpapi.TokenInURL(r) {
			// Whatever the Authenticator accepts: a token in the URL is
			// logged by proxies and kept in browser history, and an admin
			// token is the hub's most powerful credential.
			a.log.Info("admin request refused", "errcode", mautrix.MMissingToken.ErrCode, "reason", "access_token in the URL", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			writeErr(w, mautrix.MMissingToken.WithStatus(http.StatusUnauthorized).
				WithMessage("The admin API takes the access token in the Authorization header (Bearer), never in the URL"))
			return
		}
		user, err := a.auth.AdminUser(r)
		if err != nil {
			if re, ok := httpapi.AuthError(err); ok {
				a.log.Info("admin request refused", "errcode", re.ErrCode, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
				writeErr(w, re)
				return
			}
			a.internal(w, r, fmt.Errorf("authenticate: %w", err))
			return
		}
		if user == "" {
			// An authenticator bug must not open the API.
			a.internal(w, r, errors.New("authenticate: no error and no user"))
			return
		}
		// Whatever the handler audits names the admin API and the admin.
		h(w, r.WithContext(door.With(r.Context(), door.Of(door.Admin, user))), user)
	})
}

// Operator is an operator on the wire: the admin API's responses and
// `eimis-hub operator list --json` share it, so scripts can use either.
type Operator struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	ServerNames  []string  `json:"server_names"`
	Contact      string    `json:"contact"`
	Status       string    `json:"status"`
	StatusReason string    `json:"status_reason"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// OperatorFrom converts a registry operator to its wire form.
func OperatorFrom(o *operators.Operator) Operator {
	servers := o.ServerNames
	if servers == nil {
		servers = []string{} // [] rather than null: clients iterate it
	}
	return Operator{
		ID: o.ID, Name: o.Name, ServerNames: servers, Contact: o.Contact,
		Status: string(o.Status), StatusReason: o.StatusReason,
		CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC(),
	}
}

// OperatorList is the body of GET /operators.
type OperatorList struct {
	Operators []Operator `json:"operators"`
}

// ListFrom converts a listing to its wire form.
func ListFrom(ops []operators.Operator) OperatorList {
	out := OperatorList{Operators: make([]Operator, len(ops))}
	for i := range ops {
		out.Operators[i] = OperatorFrom(&ops[i])
	}
	return out
}

func (a *API) listOperators(w http.ResponseWriter, r *http.Request, _ string) {
	ops, err := a.reg.List(r.Context())
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	writeJSON(w, http.StatusOK, ListFrom(ops))
}

type createRequest struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	ServerNames []string `json:"server_names"`
	Contact     string   `json:"contact"`
}

func (a *API) createOperator(w http.ResponseWriter, r *http.Request, admin string) {
	var req createRequest
	if e := jsonBody.Decode(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	o, err := a.reg.Add(r.Context(), operators.Operator{
		ID: req.ID, Name: req.Name, ServerNames: req.ServerNames, Contact: req.Contact,
	}, admin)
	if err != nil {
		a.fail(w, r, strings.TrimSpace(req.ID), err)
		return
	}
	w.Header().Set("Location", Prefix+"operators/"+o.ID)
	writeJSON(w, http.StatusCreated, OperatorFrom(o))
}

func (a *API) getOperator(w http.ResponseWriter, r *http.Request, _ string) {
	id := r.PathValue("id")
	o, err := a.reg.Get(r.Context(), id)
	if err != nil {
		a.fail(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, OperatorFrom(o))
}

type statusRequest struct {
	Reason string `json:"reason"`
}

// setStatus serves suspend, reactivate and revoke, which differ only in
// the registry method they call.
func (a *API) setStatus(change func(ctx context.Context, id, reason, actor string) (*operators.Operator, error)) adminHandler {
	return func(w http.ResponseWriter, r *http.Request, admin string) {
		var req statusRequest
		if e := jsonBody.Decode(r, &req); e != nil {
			writeErr(w, *e)
			return
		}
		id := r.PathValue("id")
		o, err := change(r.Context(), id, req.Reason, admin)
		if err != nil {
			a.fail(w, r, id, err)
			return
		}
		writeJSON(w, http.StatusOK, OperatorFrom(o))
	}
}

// unrecognized answers what no route matched: 405 for a known path with
// the wrong method, 404 otherwise, both M_UNRECOGNIZED as the Matrix spec
// asks of unknown endpoints.
func (a *API) unrecognized(w http.ResponseWriter, r *http.Request, _ string) {
	if allow := allowed(strings.TrimPrefix(r.URL.Path, Prefix)); allow != "" {
		w.Header().Set("Allow", allow)
		writeErr(w, mautrix.MUnrecognized.WithStatus(http.StatusMethodNotAllowed).WithMessage("Method %s not allowed on %s", r.Method, r.URL.Path))
		return
	}
	writeErr(w, mautrix.MUnrecognized.WithMessage("Unrecognized request"))
}

// allowed lists the methods of a known path (relative to Prefix).
func allowed(p string) string {
	parts := strings.Split(p, "/")
	switch {
	case len(parts) == 1 && parts[0] == "operators":
		return "GET, POST"
	case len(parts) == 2 && parts[0] == "operators" && parts[1] != "":
		return "GET"
	case len(parts) == 3 && parts[0] == "operators" && parts[1] != "" &&
		(parts[2] == "suspend" || parts[2] == "reactivate" || parts[2] == "revoke"):
		return "POST"
	case len(parts) == 1 && parts[0] == "bindings":
		return "GET"
	case len(parts) == 4 && parts[0] == "bindings" && parts[1] != "" && parts[2] != "" && parts[3] != "":
		return "DELETE"
	}
	return ""
}

// fail turns a registry error into a Matrix error. id is the operator the
// request is about, for messages.
func (a *API) fail(w http.ResponseWriter, r *http.Request, id string, err error) {
	var ve *operators.ValidationError
	var claimed *operators.ServerClaimedError
	switch {
	case errors.As(err, &ve):
		writeErr(w, mautrix.MInvalidParam.WithMessage("%s", ve.Error()).WithExtraField("field", ve.Field))
	case errors.As(err, &claimed):
		writeErr(w, mautrix.MInvalidParam.WithStatus(http.StatusConflict).
			WithMessage("server name %s already belongs to operator %s", claimed.ServerName, claimed.Owner).
			WithExtraField("field", operators.FieldServerNames))
	case errors.Is(err, operators.ErrExists):
		writeErr(w, mautrix.MInvalidParam.WithStatus(http.StatusConflict).
			WithMessage("operator %s already exists", id).WithExtraField("field", operators.FieldID))
	case errors.Is(err, operators.ErrNotFound):
		writeErr(w, mautrix.MNotFound.WithMessage("no operator %s", id))
	case errors.Is(err, operators.ErrRevoked):
		// The same code the checks give for this operator's traffic.
		ref := &operators.Refusal{Code: operators.CodeOperatorRevoked, Subject: id, Operator: id}
		writeErr(w, mautrix.MBadState.WithStatus(http.StatusConflict).
			WithMessage("%s; revocation is final", ref.Error()).WithExtraField("eimis_code", string(ref.Code)))
	default:
		if ref, ok := operators.AsRefusal(err); ok {
			writeErr(w, mautrix.MForbidden.WithMessage("%s", ref.Error()).WithExtraField("eimis_code", string(ref.Code)))
			return
		}
		a.internal(w, r, err)
	}
}

// internal answers an internal error, logged by class only.
func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Internal(a.log, w, r, err)
}

// jsonBody is how the API reads request bodies: an empty body counts as {},
// so "reactivate" needs none; a body that is not an object, a wrong type
// or an unknown field (a typo such as "server_name" would otherwise be
// silently dropped) is M_BAD_JSON, naming the member.
var jsonBody = httpapi.Body{Max: maxBodyBytes, Schema: true}
