package appservice

import (
	"context"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/httpjson"
	"github.com/eimis-hub/eimis/internal/policy"
)

// The one way the hub writes JSON answers and Matrix errors.
var (
	writeJSON = httpjson.Write
	writeErr  = httpjson.Error
)

// BindingsPath is where an appservice shows a practitioner's consent for
// its puppet of them: POST {"user_id": "<puppet>", "link_code": "…"} (or
// "psc_proof"), with its as_token. Appservices that cannot call it (an
// unmodified mautrix bridge) rely on the practitioner approving them from
// their own session (POST /_eimis/client/v1/bindings).
const BindingsPath = "/_eimis/appservice/v1/bindings"

// Consent is what the appservice door needs of internal/consent.
type Consent interface {
	Bind(ctx context.Context, d door.Door, u id.UserID, ev consent.Evidence) (consent.Grant, error)
	Unbind(ctx context.Context, d door.Door, u id.UserID) (bool, error)
}

// Register mounts the appservice door's own endpoints on mux.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+BindingsPath, s.bind)
	mux.HandleFunc("DELETE "+BindingsPath+"/{userId}", s.unbind)
}

type bindRequest struct {
	UserID   string `json:"user_id"`
	LinkCode string `json:"link_code"`
	PSCProof string `json:"psc_proof"`
}

// BindResult is the answer to a bind.
type BindResult struct {
	// UserID is the practitioner's own user ID; Puppet the appservice's
	// user standing for them.
	UserID string `json:"user_id"`
	Puppet string `json:"puppet"`
	Proof  string `json:"proof"`
}

// puppetFor resolves the request's as_token and puppet: the appservice,
// the puppet and the practitioner it stands for.
func (s *Service) puppetFor(w http.ResponseWriter, r *http.Request, user string) (asID string, puppet, practitioner id.UserID, ok bool) {
	tok := httpapi.BearerToken(r)
	if tok == "" {
		writeErr(w, mautrix.MMissingToken.WithStatus(http.StatusUnauthorized).WithMessage("Missing as_token (Authorization: Bearer)"))
		return "", "", "", false
	}
	asID, found := s.Owner(tok)
	if !found {
		writeErr(w, mautrix.MUnknownToken.WithStatus(http.StatusUnauthorized).WithMessage("Unknown as_token"))
		return "", "", "", false
	}
	puppet = id.UserID(user)
	idnat, owner, isPuppet, err := s.cfg.Policy.PuppetOf(puppet)
	if !isPuppet || err != nil || owner != asID || !s.Owns(asID, puppet) {
		writeErr(w, mautrix.MInvalidParam.WithStatus(http.StatusBadRequest).
			WithMessage("%s is not a puppet of application service %s standing for a practitioner", user, asID))
		return "", "", "", false
	}
	return asID, puppet, id.NewUserID(idnat, s.cfg.ServerName), true
}

func (s *Service) bind(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Consent == nil || s.cfg.Policy == nil {
		writeErr(w, mautrix.MUnrecognized.WithStatus(http.StatusNotFound).WithMessage("Unrecognized request"))
		return
	}
	var req bindRequest
	if e := bindBody.Decode(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	if req.UserID == "" {
		writeErr(w, mautrix.MBadJSON.WithStatus(http.StatusBadRequest).WithMessage("Expected {\"user_id\": …, \"link_code\" or \"psc_proof\": …}"))
		return
	}
	asID, puppet, practitioner, ok := s.puppetFor(w, r, req.UserID)
	if !ok {
		return
	}
	d := door.Of(door.Appservice, asID)
	r = r.WithContext(door.With(r.Context(), d))
	refused := func(ref *policy.Refusal) {
		s.cfg.Recorder.Refused(r.Context(), door.Refusal{Door: d, Code: string(ref.Code), Actor: string(puppet),
			Action: audit.ActionBindingBind, Target: string(practitioner)})
		writeErr(w, mautrix.MForbidden.WithStatus(http.StatusForbidden).WithMessage("%s", ref.Error()).
			WithExtraField("eimis_code", string(ref.Code)))
	}
	if err := s.cfg.Policy.CheckPractitioner(practitioner.Localpart()); err != nil {
		if ref, ok := policy.AsRefusal(err); ok {
			refused(ref)
			return
		}
		s.internal(w, r, err)
		return
	}
	grant, err := s.cfg.Consent.Bind(r.Context(), d, practitioner, consent.Evidence{LinkCode: req.LinkCode, PSCProof: req.PSCProof})
	if ref, ok := policy.AsRefusal(err); ok {
		refused(ref)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, BindResult{UserID: string(practitioner), Puppet: string(puppet), Proof: grant.Binding.Proof})
}

// unbind: the appservice stops standing for the practitioner (its own
// decision); the puppet is then refused, as without consent.
func (s *Service) unbind(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Consent == nil || s.cfg.Policy == nil {
		writeErr(w, mautrix.MUnrecognized.WithStatus(http.StatusNotFound).WithMessage("Unrecognized request"))
		return
	}
	asID, _, practitioner, ok := s.puppetFor(w, r, r.PathValue("userId"))
	if !ok {
		return
	}
	existed, err := s.cfg.Consent.Unbind(r.Context(), door.Of(door.Appservice, asID), practitioner)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"unbound": existed})
}

// bindBody is how a bind's body is read.
var bindBody = httpapi.Body{Max: 64 << 10, Required: true}

// internal answers an internal error, logged by class only.
func (s *Service) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Internal(s.cfg.Log, w, r, err)
}
