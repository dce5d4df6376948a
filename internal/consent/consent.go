// Package consent decides whether an app may act for a practitioner. An
// app is a vendor's bridge (Bridge Protocol) or a Matrix appservice; it
// acts for a practitioner only through a binding, and a binding is made
// only with proof that the practitioner agreed:
//
//   - psc: a Pro Santé Connect access token of the practitioner, checked
//     with the provider (when the hub has Pro Santé Connect);
//   - link_code: a short one-time code the practitioner obtained from a
//     session of their own (any Matrix client, or the hub's Pro Santé
//     Connect login) and typed into the app;
//   - session: the practitioner approved the app from a session of their
//     own (the way to consent to an appservice whose software cannot
//     carry a code, such as an unmodified mautrix bridge);
//   - insecure: no proof, for bridges only, under the configuration
//     bridge_bind_without_consent_insecure (demos and tests).
//
// A binding records its proof, its time and its door, so that it is a
// record of consent the practitioner can list and revoke (and operators
// too), and the audit trail says which app acted for whom.
package consent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
)

// Store is what consent needs of the hub's store.
type Store interface {
	PutBinding(ctx context.Context, b store.Binding) (bool, error)
	GetBinding(ctx context.Context, kind, appID, userID string) (*store.Binding, error)
	DeleteBinding(ctx context.Context, kind, appID, userID string) (bool, error)
	Bindings(ctx context.Context, f store.BindingFilter) ([]store.Binding, error)
	PutLinkCode(ctx context.Context, c store.LinkCode, maxPerUser int) error
	TakeLinkCode(ctx context.Context, hash []byte, door string, now time.Time) (*store.LinkCode, error)
}

// Defaults of Config.
const (
	DefaultLinkCodeTTL     = 10 * time.Minute
	DefaultMaxCodesPerUser = 5
	DefaultMaxWrongCodes   = 10
	DefaultWrongCodeWindow = 15 * time.Minute
)

// Errors callers branch on (refusals are *policy.Refusal values).
var (
	// ErrUnknownApp: no bridge or appservice has this ID.
	ErrUnknownApp = errors.New("consent: no such app")
	// ErrBadDoor: bindings are made through a bridge or an appservice.
	ErrBadDoor = errors.New("consent: an app is a bridge or an appservice")
)

// Config wires the service.
type Config struct {
	Store Store
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// LinkCodeTTL is how long a link code lives (DefaultLinkCodeTTL).
	LinkCodeTTL time.Duration
	// MaxCodesPerUser bounds a practitioner's live codes; a new one
	// replaces the oldest (DefaultMaxCodesPerUser).
	MaxCodesPerUser int
	// MaxWrongCodes wrong link codes from one app within WrongCodeWindow
	// refuse its further link-code binds until the window ends
	// (DefaultMaxWrongCodes, DefaultWrongCodeWindow).
	MaxWrongCodes   int
	WrongCodeWindow time.Duration
	// VerifyPSC checks that proof is a Pro Santé Connect access token of
	// the practitioner idNat; nil when the hub has no Pro Santé Connect
	// (a psc_proof is then refused).
	VerifyPSC func(ctx context.Context, idNat, proof string) error
	// BridgeRequirePSC (bridge_require_psc_proof) makes Pro Santé Connect
	// the only proof bridges may bind with: link codes and approvals are
	// refused, and bindings made with them are not honoured.
	BridgeRequirePSC bool
	// BridgeInsecure (bridge_bind_without_consent_insecure) lets a bridge
	// bind without any proof. For demos and tests only.
	BridgeInsecure bool
	// Audit records what was allowed (binds, unbinds, revocations, link
	// codes issued); nil records nothing. Refusals are recorded by the
	// doors, through their door.Recorder.
	Audit func(ctx context.Context, e audit.Entry)
	// OnChange is told about every binding made, unbound or revoked, after
	// the store has it: the hub tells the doors (a live bridge connection
	// drops a revoked user, the policy engine reloads appservice consents)
	// and the other instances.
	OnChange func(ctx context.Context, c Change)
	Log      *slog.Logger
}

// Change is a binding made or removed.
type Change struct {
	Binding store.Binding
	// Action is audit.ActionBindingBind, ActionBindingUnbind (the app
	// stopped acting) or ActionBindingRevoke (the practitioner or an
	// operator withdrew it).
	Action string
	Actor  string
}

// Evidence is what an app presents when it binds a practitioner: a link
// code or a Pro Santé Connect proof (checked first when both are given).
type Evidence struct {
	LinkCode string
	PSCProof string
}

// Grant is a bind that was allowed.
type Grant struct {
	Binding store.Binding
	// Created: the binding is new; Fresh: it was (re)made with the proof
	// just given, as opposed to an existing consent taken as it stands.
	Created, Fresh bool
}

// LinkCode is a code handed to a practitioner.
type LinkCode struct {
	Code      string
	ExpiresAt time.Time
	// Door is the app the code is restricted to (zero: any).
	Door door.Door
}

// Service decides and records consent.
type Service struct {
	cfg   Config
	tries *attempts
}

// New returns a service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LinkCodeTTL <= 0 {
		cfg.LinkCodeTTL = DefaultLinkCodeTTL
	}
	if cfg.MaxCodesPerUser <= 0 {
		cfg.MaxCodesPerUser = DefaultMaxCodesPerUser
	}
	if cfg.MaxWrongCodes <= 0 {
		cfg.MaxWrongCodes = DefaultMaxWrongCodes
	}
	if cfg.WrongCodeWindow <= 0 {
		cfg.WrongCodeWindow = DefaultWrongCodeWindow
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, tries: newAttempts(cfg.MaxWrongCodes, cfg.WrongCodeWindow)}
}

// LinkCodeTTL is how long the codes it issues live.
func (s *Service) LinkCodeTTL() time.Duration { return s.cfg.LinkCodeTTL }

// kindOf maps a door to a binding kind.
func kindOf(d door.Door) (string, error) {
	switch d.Kind {
	case door.Bridge:
		if d.ID != "" {
			return store.BindingBridge, nil
		}
	case door.Appservice:
		if d.ID != "" {
			return store.BindingAppservice, nil
		}
	}
	return "", ErrBadDoor
}

// DoorOf is the door a binding's app speaks through.
func DoorOf(b store.Binding) door.Door {
	switch b.Kind {
	case store.BindingBridge:
		return door.Of(door.Bridge, b.AppID)
	case store.BindingAppservice:
		return door.Of(door.Appservice, b.AppID)
	}
	return door.Door{}
}

// Honoured reports whether a stored binding lets its app act now: a
// binding made without consent (insecure, or from before consent was
// recorded) only in the insecure mode, and under bridge_require_psc_proof
// a bridge's only with a Pro Santé Connect proof.
func (s *Service) Honoured(b store.Binding) bool {
	switch b.Proof {
	case store.ProofPSC:
		return true
	case store.ProofLinkCode, store.ProofSession:
		return b.Kind != store.BindingBridge || !s.cfg.BridgeRequirePSC
	case store.ProofInsecure, store.ProofLegacy:
		return b.Kind == store.BindingBridge && s.cfg.BridgeInsecure
	}
	return false
}

// IssueLinkCode gives a practitioner a one-time code, restricted to the
// app behind only when only is not the zero door. The caller has
// authenticated user as the practitioner, from a session of their own.
func (s *Service) IssueLinkCode(ctx context.Context, user id.UserID, only door.Door) (LinkCode, error) {
	if only != (door.Door{}) {
		if _, err := kindOf(only); err != nil {
			return LinkCode{}, err
		}
	}
	now := s.cfg.Now()
	lc := LinkCode{ExpiresAt: now.Add(s.cfg.LinkCodeTTL), Door: only}
	for try := 0; ; try++ {
		lc.Code = newCode()
		norm, _ := normalizeCode(lc.Code)
		err := s.cfg.Store.PutLinkCode(ctx, store.LinkCode{
			Hash: codeHash(string(user), norm), UserID: string(user), Door: only.String(), CreatedAt: now, ExpiresAt: lc.ExpiresAt,
		}, s.cfg.MaxCodesPerUser)
		if errors.Is(err, store.ErrExists) && try < 3 {
			continue // the user already holds this very code: draw again
		}
		if err != nil {
			return LinkCode{}, fmt.Errorf("consent: link code: %w", err)
		}
		break
	}
	restricted := only.String()
	if restricted == "" {
		restricted = "any"
	}
	s.audit(ctx, audit.Entry{Actor: string(user), Action: audit.ActionBindingLinkCode, Target: string(user),
		Decision: audit.Allow, Reason: "for=" + restricted})
	return lc, nil
}

// Bind lets the app behind d act for user, given the evidence of the
// practitioner's consent; without evidence, an existing honoured binding
// stands (a bridge reconnecting binds its users again). A refusal is a
// *policy.Refusal with a stable code (ConsentRequired, LinkCodeInvalid,
// LinkCodeAttempts, PSCProofRequired, PSCProofInvalid); ErrUnknownApp
// when d names no registered app. The caller checks user against the
// trust space first.
func (s *Service) Bind(ctx context.Context, d door.Door, user id.UserID, ev Evidence) (Grant, error) {
	kind, err := kindOf(d)
	if err != nil {
		return Grant{}, err
	}
	idnat := user.Localpart()
	refuse := func(code policy.Code) (Grant, error) {
		return Grant{}, &policy.Refusal{Code: code, Subject: string(user)}
	}
	requirePSC := kind == store.BindingBridge && s.cfg.BridgeRequirePSC
	var proof string
	switch {
	case ev.PSCProof != "":
		if s.cfg.VerifyPSC == nil {
			return refuse(policy.PSCProofInvalid)
		}
		if err := s.cfg.VerifyPSC(ctx, idnat, ev.PSCProof); err != nil {
			// The provider's answer stays out of the refusal: it goes to
			// the app, and to the audit trail through the door.
			s.cfg.Log.Info("bind refused: Pro Santé Connect proof", "door", d.String(), "user", user, "err", err)
			return refuse(policy.PSCProofInvalid)
		}
		proof = store.ProofPSC
	case ev.LinkCode != "":
		if requirePSC {
			return refuse(policy.PSCProofRequired)
		}
		now := s.cfg.Now()
		if s.tries.locked(d.String(), now) {
			return Grant{}, &policy.Refusal{Code: policy.LinkCodeAttempts, Subject: d.String()}
		}
		norm, ok := normalizeCode(ev.LinkCode)
		if ok {
			_, err := s.cfg.Store.TakeLinkCode(ctx, codeHash(string(user), norm), d.String(), now)
			switch {
			case errors.Is(err, store.ErrNotFound):
				ok = false
			case err != nil:
				return Grant{}, fmt.Errorf("consent: take link code: %w", err)
			}
		}
		if !ok {
			if s.tries.wrong(d.String(), now) {
				s.cfg.Log.Warn("too many wrong link codes: link-code binds refused for a while", "door", d.String(),
					"max", s.cfg.MaxWrongCodes, "window", s.cfg.WrongCodeWindow)
			}
			return refuse(policy.LinkCodeInvalid)
		}
		proof = store.ProofLinkCode
	default:
		b, err := s.cfg.Store.GetBinding(ctx, kind, d.ID, string(user))
		switch {
		case err == nil && s.Honoured(*b):
			return Grant{Binding: *b}, nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return Grant{}, fmt.Errorf("consent: binding: %w", err)
		case kind == store.BindingBridge && s.cfg.BridgeInsecure:
			proof = store.ProofInsecure
		case requirePSC:
			return refuse(policy.PSCProofRequired)
		default:
			return refuse(policy.ConsentRequired)
		}
	}
	return s.record(ctx, store.Binding{Kind: kind, AppID: d.ID, UserID: string(user), Proof: proof, BoundAt: s.cfg.Now()}, d.String())
}

// Approve records that the practitioner, in a session of their own,
// consents to the app behind d acting for them (proof session).
func (s *Service) Approve(ctx context.Context, user id.UserID, d door.Door) (Grant, error) {
	kind, err := kindOf(d)
	if err != nil {
		return Grant{}, err
	}
	if kind == store.BindingBridge && s.cfg.BridgeRequirePSC {
		return Grant{}, &policy.Refusal{Code: policy.PSCProofRequired, Subject: string(user)}
	}
	return s.record(ctx, store.Binding{Kind: kind, AppID: d.ID, UserID: string(user), Proof: store.ProofSession, BoundAt: s.cfg.Now()}, string(user))
}

func (s *Service) record(ctx context.Context, b store.Binding, actor string) (Grant, error) {
	created, err := s.cfg.Store.PutBinding(ctx, b)
	if errors.Is(err, store.ErrNotFound) {
		return Grant{}, fmt.Errorf("%w: %s", ErrUnknownApp, DoorOf(b))
	}
	if err != nil {
		return Grant{}, fmt.Errorf("consent: bind: %w", err)
	}
	s.audit(ctx, audit.Entry{Actor: actor, Action: audit.ActionBindingBind, Target: b.UserID, Decision: audit.Allow,
		Reason: "app=" + DoorOf(b).String() + " proof=" + b.Proof})
	s.changed(ctx, Change{Binding: b, Action: audit.ActionBindingBind, Actor: actor})
	return Grant{Binding: b, Created: created, Fresh: true}, nil
}

// Unbind records that the app behind d stopped acting for user (its own
// decision) and reports whether it did.
func (s *Service) Unbind(ctx context.Context, d door.Door, user id.UserID) (bool, error) {
	kind, err := kindOf(d)
	if err != nil {
		return false, err
	}
	return s.remove(ctx, store.Binding{Kind: kind, AppID: d.ID, UserID: string(user)}, audit.ActionBindingUnbind, d.String())
}

// Revoke withdraws an app's binding of a practitioner: the practitioner
// themselves or an operator (actor) decided it. It reports whether there
// was one. The app loses the practitioner at once (OnChange).
func (s *Service) Revoke(ctx context.Context, d door.Door, user id.UserID, actor string) (bool, error) {
	kind, err := kindOf(d)
	if err != nil {
		return false, err
	}
	return s.remove(ctx, store.Binding{Kind: kind, AppID: d.ID, UserID: string(user)}, audit.ActionBindingRevoke, actor)
}

func (s *Service) remove(ctx context.Context, b store.Binding, action, actor string) (bool, error) {
	existed, err := s.cfg.Store.DeleteBinding(ctx, b.Kind, b.AppID, b.UserID)
	if err != nil || !existed {
		return false, err
	}
	s.audit(ctx, audit.Entry{Actor: actor, Action: action, Target: b.UserID, Decision: audit.Allow,
		Reason: "app=" + DoorOf(b).String()})
	s.changed(ctx, Change{Binding: b, Action: action, Actor: actor})
	return true, nil
}

// List returns the bindings matching f.
func (s *Service) List(ctx context.Context, f store.BindingFilter) ([]store.Binding, error) {
	return s.cfg.Store.Bindings(ctx, f)
}

func (s *Service) audit(ctx context.Context, e audit.Entry) {
	if s.cfg.Audit == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = s.cfg.Now()
	}
	if e.RequestID == "" {
		e.RequestID = door.RequestID(ctx)
	}
	if e.Door == "" {
		// The door the request came through: the practitioner's device
		// (a link code, an approval, a revocation), the bridge or the
		// appservice (a bind), the admin API.
		e.Door = door.From(ctx).String()
	}
	s.cfg.Audit(ctx, e)
}

func (s *Service) changed(ctx context.Context, c Change) {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(ctx, c)
	}
}
