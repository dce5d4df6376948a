package consent

import (
	"errors"
	"log/slog"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/codes"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/httpjson"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
)

// The one way the hub writes JSON answers and Matrix errors.
var (
	writeJSON = httpjson.Write
	writeErr  = httpjson.Error
)

// ClientPath is where practitioners manage their bindings, from a
// session of their own (a Matrix access token):
//
//	POST   /_eimis/client/v1/bindings/link_code   {"door"?, "id"?} → a one-time code
//	GET    /_eimis/client/v1/bindings             their bindings
//	POST   /_eimis/client/v1/bindings             {"door", "id"}: approve an app
//	DELETE /_eimis/client/v1/bindings/{door}/{id} revoke an app's binding
const ClientPath = "/_eimis/client/v1/bindings"

// Authenticator resolves the request's Matrix access token to its user
// and the door it came through (the device); its errors are
// mautrix.RespError values (M_MISSING_TOKEN …).
type Authenticator interface {
	Authenticate(r *http.Request) (userID string, d door.Door, err error)
}

// Binding is a binding on the wire: the client API, the admin API and
// `eimis-hub bridge bindings list --json` share it.
type Binding struct {
	// Door is "bridge" or "appservice"; ID the bridge or registration ID.
	Door   string `json:"door"`
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	// Proof is how the practitioner consented: psc, link_code, session,
	// or insecure / legacy (no consent recorded).
	Proof   string `json:"proof"`
	BoundAt int64  `json:"bound_at"` // Unix ms
	// Active: the app may act for the practitioner now (a binding made
	// without consent is not honoured outside the insecure mode).
	Active bool `json:"active"`
}

// Wire converts bindings to their wire form.
func (s *Service) Wire(bs []store.Binding) []Binding {
	out := make([]Binding, 0, len(bs))
	for _, b := range bs {
		out = append(out, Binding{Door: b.Kind, ID: b.AppID, UserID: b.UserID, Proof: b.Proof,
			BoundAt: b.BoundAt.UnixMilli(), Active: s.Honoured(b)})
	}
	return out
}

// ParseDoor reads a door given as kind and ID ("bridge", "acme-prod").
func ParseDoor(kind, appID string) (door.Door, error) {
	d := door.Door{Kind: door.Kind(kind), ID: appID}
	if _, err := kindOf(d); err != nil {
		return door.Door{}, err
	}
	return d, nil
}

// API serves ClientPath.
type API struct {
	svc        *Service
	auth       Authenticator
	serverName string
	log        *slog.Logger
}

// NewAPI returns the practitioners' bindings API.
func NewAPI(svc *Service, auth Authenticator, serverName string, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{svc: svc, auth: auth, serverName: serverName, log: log}
}

// Register mounts the API on mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+ClientPath+"/link_code", a.practitioner(a.linkCode))
	mux.HandleFunc("GET "+ClientPath, a.practitioner(a.list))
	mux.HandleFunc("POST "+ClientPath, a.practitioner(a.approve))
	mux.HandleFunc("DELETE "+ClientPath+"/{door}/{id}", a.practitioner(a.revoke))
}

// practitioner authenticates the request as a practitioner's own
// session: only the practitioner gives or withdraws their consent, never
// a service account, an appservice or its puppet.
func (a *API) practitioner(h func(w http.ResponseWriter, r *http.Request, u id.UserID)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, d, err := a.auth.Authenticate(r)
		if err != nil {
			httpapi.Refuse(a.log, w, r, err)
			return
		}
		u := id.UserID(s)
		// The trail names the practitioner's own device as the door.
		r = r.WithContext(door.With(r.Context(), d))
		lp, hs, err := u.Parse()
		if err == nil && hs == a.serverName {
			_, _, err = directory.ParseIDNat(lp)
		}
		if err != nil || hs != a.serverName {
			writeErr(w, codes.RespError(string(policy.NotAPractitionerID),
				string(u)+" is not a practitioner's own account: only practitioners consent to apps acting for them"))
			return
		}
		h(w, r, u)
	}
}

type doorRequest struct {
	Door string `json:"door"`
	ID   string `json:"id"`
}

// LinkCodeResponse is the answer to POST …/link_code.
type LinkCodeResponse struct {
	LinkCode    string `json:"link_code"`
	ExpiresInMS int64  `json:"expires_in_ms"`
	// Door and ID repeat the app the code is restricted to, if any.
	Door string `json:"door,omitempty"`
	ID   string `json:"id,omitempty"`
}

func (a *API) linkCode(w http.ResponseWriter, r *http.Request, u id.UserID) {
	var req doorRequest
	if e := optionalBody.Decode(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	var only door.Door
	if req.Door != "" || req.ID != "" {
		d, err := ParseDoor(req.Door, req.ID)
		if err != nil {
			writeErr(w, mautrix.MInvalidParam.WithStatus(http.StatusBadRequest).
				WithMessage("door must be \"bridge\" or \"appservice\", with the app's id"))
			return
		}
		only = d
	}
	lc, err := a.svc.IssueLinkCode(r.Context(), u, only)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, LinkCodeResponse{LinkCode: lc.Code, ExpiresInMS: lc.ExpiresAt.Sub(a.svc.cfg.Now()).Milliseconds(),
		Door: string(only.Kind), ID: only.ID})
}

func (a *API) list(w http.ResponseWriter, r *http.Request, u id.UserID) {
	bs, err := a.svc.List(r.Context(), store.BindingFilter{UserID: string(u)})
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]Binding{"bindings": a.svc.Wire(bs)})
}

func (a *API) approve(w http.ResponseWriter, r *http.Request, u id.UserID) {
	var req doorRequest
	if e := doorBody.Decode(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	d, err := ParseDoor(req.Door, req.ID)
	if err != nil {
		writeErr(w, mautrix.MInvalidParam.WithStatus(http.StatusBadRequest).
			WithMessage("door must be \"bridge\" or \"appservice\", with the app's id"))
		return
	}
	g, err := a.svc.Approve(r.Context(), u, d)
	if ref, ok := policy.AsRefusal(err); ok {
		writeErr(w, codes.RespError(string(ref.Code), ref.Error()))
		return
	}
	if errors.Is(err, ErrUnknownApp) {
		writeErr(w, mautrix.MNotFound.WithStatus(http.StatusNotFound).WithMessage("No %s %s on this hub", d.Kind, d.ID))
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.svc.Wire([]store.Binding{g.Binding})[0])
}

func (a *API) revoke(w http.ResponseWriter, r *http.Request, u id.UserID) {
	d, err := ParseDoor(r.PathValue("door"), r.PathValue("id"))
	if err != nil {
		writeErr(w, mautrix.MNotFound.WithStatus(http.StatusNotFound).WithMessage("No such binding"))
		return
	}
	existed, err := a.svc.Revoke(r.Context(), d, u, string(u))
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if !existed {
		writeErr(w, mautrix.MNotFound.WithStatus(http.StatusNotFound).WithMessage("%s does not act for you", d))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// internal answers an internal error, logged by class only.
func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Internal(a.log, w, r, err)
}

// How the API reads request bodies: {"door", "id"} objects, unknown
// fields refused (a misspelt "door" must not give a code valid for every
// app); a link code's body is optional (empty is {}).
var (
	doorBody     = httpapi.Body{Max: 16 << 10, Schema: true, Required: true}
	optionalBody = httpapi.Body{Max: 16 << 10, Schema: true}
)
