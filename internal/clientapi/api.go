// Package clientapi serves the Matrix Client-Server API: it decodes
// requests, authenticates them, and hands the work to identity, rooms and
// syncapi. Errors leave as Matrix error values (M_FORBIDDEN …).
package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/canonjson"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/httpjson"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/ratelimit"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/syncapi"
)

// The one way the hub writes JSON answers and Matrix errors.
var (
	writeJSON = httpjson.Write
	writeErr  = httpjson.Error
)

// Matrix error values the mautrix package does not predefine.
var (
	MMissingParam           = mautrix.RespError{ErrCode: "M_MISSING_PARAM", StatusCode: http.StatusBadRequest}
	MGuestAccessForbidden   = mautrix.RespError{ErrCode: "M_GUEST_ACCESS_FORBIDDEN", StatusCode: http.StatusForbidden}
	MUnsupportedRoomVersion = mautrix.MUnsupportedRoomVersion.WithStatus(http.StatusBadRequest)
)

// maxBodyBytes bounds request bodies: an event is at most 64 KiB once
// signed, so nothing a client sends legitimately is much larger.
const maxBodyBytes = 1 << 20

// Config of the client API.
type Config struct {
	ServerName         string
	PublicBaseURL      string
	EnableRegistration bool
	// ProfileRequiresAuth keeps unauthenticated callers from learning who
	// has an account: GET /profile needs an access token, and
	// /register/available answers alike for every valid username.
	ProfileRequiresAuth bool
}

// Readiness reports whether dependencies are reachable.
type Readiness interface {
	Ping(ctx context.Context) error
}

// Store is what the Client-Server API reads and writes directly (rooms,
// sessions and /sync go through their own services): profiles and
// accounts, devices, login tokens, aliases, account data, receipts,
// filters, and a few membership and state reads.
type Store interface {
	store.AliasStore

	GetAccount(ctx context.Context, localpart string) (*store.Account, error)
	SearchAccounts(ctx context.Context, term string, limit int) ([]store.Account, error)
	AccountsExist(ctx context.Context, localparts []string) (map[string]bool, error)
	SetDisplayName(ctx context.Context, localpart, name string) error
	SetAvatarURL(ctx context.Context, localpart, url string) error
	CreateDevice(ctx context.Context, d store.Device) error
	ListDevices(ctx context.Context, localpart string) ([]store.Device, error)
	PutLoginToken(ctx context.Context, tokenHash []byte, localpart string, expires time.Time) error
	TakeLoginToken(ctx context.Context, tokenHash []byte, now time.Time) (string, error)

	PutAccountData(ctx context.Context, d store.AccountData) (int64, error)
	GetAccountData(ctx context.Context, userID, roomID, typ string) (*store.AccountData, error)
	PutReceipt(ctx context.Context, r store.Receipt) (int64, error)
	PutFilter(ctx context.Context, userID string, filter json.RawMessage) (string, error)
	GetFilter(ctx context.Context, userID, filterID string) (json.RawMessage, error)

	CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (*store.Event, error)
	UserMemberships(ctx context.Context, userID string) ([]store.Membership, error)
}

// API is the Client-Server API.
type API struct {
	cfg    Config
	st     Store
	ids    *identity.Service
	shared *identity.SharedSecretRegistrar
	rooms  *rooms.Server
	sync   *syncapi.API
	log    *slog.Logger
	ready  map[string]Readiness

	// filters caches stored sync filters: Matrix filters never change once
	// created, and clients send the same filter ID on every /sync.
	filterMu sync.Mutex
	filters  map[[2]string]int

	trust Trust

	// appservices authenticates application services; nil when the API
	// runs without them.
	appservices Appservices

	// limits are the rate limits (limits.go); nil limits nothing.
	limits *ratelimit.Limits

	// fed joins, leaves and invites across servers (federation.go); nil
	// keeps every room local. Set once, possibly while serving.
	fed atomic.Pointer[fedHolder]
}

// Appservices is the Application Service API's side of authentication
// (bridges/appservice implements it): requests made with an as_token,
// masquerading with ?user_id=, and the namespaces appservices own.
// Errors it returns are mautrix.RespError values or policy refusals.
type Appservices interface {
	// Authenticate resolves an as_token acting as userID ("" for the
	// appservice's sender); ok is false when token is no appservice's.
	Authenticate(ctx context.Context, token string, userID id.UserID) (s identity.Session, ok bool, err error)
	// Owner returns the appservice whose as_token this is.
	Owner(token string) (asID string, ok bool)
	// Owns reports whether the appservice may register or log in u.
	Owns(asID string, u id.UserID) bool
	// Exclusive returns the appservice holding u exclusively, if any.
	Exclusive(u id.UserID) (asID string, ok bool)
	// Ping calls the appservice's ping endpoint and times the answer.
	Ping(ctx context.Context, asID, txnID string) (time.Duration, error)
}

// SetAppservices turns on the Application Service API; call before
// serving.
func (a *API) SetAppservices(as Appservices) { a.appservices = as }

// New builds the API. shared may be nil (shared-secret registration off).
func New(cfg Config, st Store, ids *identity.Service, shared *identity.SharedSecretRegistrar,
	rs *rooms.Server, sy *syncapi.API, log *slog.Logger, ready map[string]Readiness) *API {
	return &API{cfg: cfg, st: st, ids: ids, shared: shared, rooms: rs, sync: sy, log: log, ready: ready,
		filters: map[[2]string]int{}}
}

// Handler returns the HTTP handler with every route.
func (a *API) Handler() *http.ServeMux {
	mux := http.NewServeMux()
	a.routes(mux)
	return mux
}

// authed wraps handlers that need an access token.
type authedHandler func(w http.ResponseWriter, r *http.Request, s identity.Session)

func (a *API) auth(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := httpapi.AccessToken(r)
		if tok == "" {
			writeErr(w, mautrix.MMissingToken.WithMessage("Missing access token"))
			return
		}
		if a.appservices != nil {
			// An appservice acts as ?user_id= (its sender by default); the
			// parameter means nothing with an ordinary access token.
			s, ok, err := a.appservices.Authenticate(r.Context(), tok, id.UserID(r.URL.Query().Get("user_id")))
			if ok {
				if err != nil {
					asID, _ := a.appservices.Owner(tok)
					a.appserviceErr(w, r.WithContext(door.With(r.Context(), door.Of(door.Appservice, asID))), err)
					return
				}
				h(w, r.WithContext(a.withSession(r.Context(), s)), s)
				return
			}
		}
		s, err := a.ids.Authenticate(r.Context(), tok)
		if errors.Is(err, identity.ErrUnknownToken) {
			writeErr(w, mautrix.MUnknownToken.WithMessage("Unknown access token").WithExtraField("soft_logout", false))
			return
		} else if err != nil {
			a.internal(w, r, err)
			return
		}
		h(w, r.WithContext(a.withSession(r.Context(), s)), s)
	}
}

// withSession puts the session in the context, for what only sees the
// request (the audit of a refusal), with its door: the appservice acting
// (with its as_token, or through a device of a user in its exclusive
// namespace, which the appservice logged in), or the client device.
func (a *API) withSession(ctx context.Context, s identity.Session) context.Context {
	d := door.Of(door.Client, string(s.DeviceID))
	if as := a.operatorOf(s); as != "" {
		d = door.Of(door.Appservice, as)
	}
	return door.With(context.WithValue(ctx, sessionKey{}, s), d)
}

// appserviceErr writes an appservice refusal: the trust space's (with its
// code, audited), a Matrix error, or an internal error.
func (a *API) appserviceErr(w http.ResponseWriter, r *http.Request, err error) {
	if ref, ok := policy.AsRefusal(err); ok {
		a.audit(r, AuditEvent{Actor: r.URL.Query().Get("user_id"), Action: "appservice.act_as", Reason: string(ref.Code)})
		writeErr(w, forbidden(ref))
		return
	}
	var re mautrix.RespError
	if errors.As(err, &re) {
		writeErr(w, re)
		return
	}
	a.internal(w, r, err)
}

// internal answers an internal error, logged by class only.
func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Internal(a.log, w, r, err)
}

// How the API reads request bodies (internal/httpapi): syntax errors
// and invalid UTF-8 are M_NOT_JSON, JSON the hub refuses (nested too
// deep, a member named twice, a type mismatch) M_BAD_JSON, as the spec
// distinguishes; an empty body is {}. contentBody is for a body that ends
// up in a signed event (event content, createRoom): it must also be
// canonical JSON, integers within ±(2^53−1) and no floats, or it is
// M_BAD_JSON. Checking at the door keeps a bad request from ever reaching
// the room writer.
var (
	jsonBody    = httpapi.Body{Max: maxBodyBytes, Check: canonjson.WellFormed}
	contentBody = httpapi.Body{Max: maxBodyBytes, Check: canonjson.Validate}
	// Everything in a createRoom body may end up in a signed event. Event
	// content sits 3 levels down (initial_state, its entry, content), so
	// it keeps the depth it would have on its own.
	createRoomBody = httpapi.Body{Max: maxBodyBytes, Check: canonjson.Rules{MaxDepth: canonjson.MaxDepth + 3}.Check}
)

// decodeJSON reads a JSON object body into v.
func decodeJSON(r *http.Request, v any) *mautrix.RespError { return jsonBody.Decode(r, v) }

// decodeContent is decodeJSON for a body that becomes event content.
func decodeContent(r *http.Request, v any) *mautrix.RespError { return contentBody.Decode(r, v) }

// roomsErr maps room server errors to Matrix errors.
func (a *API) roomsErr(w http.ResponseWriter, r *http.Request, err error) {
	if a.roomRefusal(w, r, err) {
		return
	}
	switch {
	case errors.Is(err, rooms.ErrForbidden):
		// The room's own rules (power levels, membership): a refusal like
		// the trust space's, counted and audited on the same path, as the
		// Bridge Protocol does with EIMIS_FORBIDDEN.
		roomID := r.PathValue("roomId")
		if roomID == "" {
			roomID = r.PathValue("roomIdOrAlias")
		}
		a.refuse(r.Context(), door.Refusal{Code: string(policy.RoomRules), Actor: actorOf(r), Action: actionOf(r), RoomID: roomID})
		writeErr(w, mautrix.MForbidden.WithMessage("%s", strings.TrimPrefix(err.Error(), "forbidden: ")))
	case errors.Is(err, rooms.ErrTooLarge):
		writeErr(w, mautrix.MTooLarge.WithMessage("%s", err.Error()))
	case errors.Is(err, rooms.ErrUnknownRoom):
		writeErr(w, mautrix.MNotFound.WithMessage("Unknown room"))
	case errors.Is(err, rooms.ErrUnknownEvent):
		writeErr(w, mautrix.MNotFound.WithMessage("%s", err.Error()))
	case errors.Is(err, rooms.ErrBadEvent):
		writeErr(w, mautrix.MBadJSON.WithMessage("%s", err.Error()))
	case errors.Is(err, rooms.ErrUnsupportedRoomVersion):
		writeErr(w, MUnsupportedRoomVersion.WithMessage("%s", err.Error()))
	case errors.Is(err, syncapi.ErrNotVisible):
		writeErr(w, mautrix.MForbidden.WithMessage("You are not allowed to see this room"))
	case errors.Is(err, syncapi.ErrBadToken):
		writeErr(w, mautrix.MInvalidParam.WithMessage("Invalid pagination token"))
	default:
		a.internal(w, r, err)
	}
}

func (a *API) unrecognized(w http.ResponseWriter, r *http.Request) {
	writeErr(w, mautrix.MUnrecognized.WithMessage("Unrecognized request"))
}

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) readiness(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	status := map[string]string{}
	code := http.StatusOK
	for name, dep := range a.ready {
		var deg interface{ Degraded() bool }
		if err := dep.Ping(ctx); errors.As(err, &deg) && deg.Degraded() {
			// Serving correctly from possibly stale data: say so, but stay
			// in the load balancer.
			status[name] = "degraded: " + err.Error()
		} else if err != nil {
			status[name] = "unavailable: " + err.Error()
			code = http.StatusServiceUnavailable
		} else {
			status[name] = "ok"
		}
	}
	writeJSON(w, code, status)
}
