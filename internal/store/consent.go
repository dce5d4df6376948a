package store

import (
	"context"
	"time"
)

// Binding kinds: the door an app acts through.
const (
	BindingBridge     = "bridge"     // a vendor's bridge (Bridge Protocol); AppID is the bridge ID
	BindingAppservice = "appservice" // a Matrix appservice; AppID is the registration ID
)

// Proofs a binding records: how the practitioner's consent was shown.
const (
	// ProofPSC: a Pro Santé Connect access token of the practitioner.
	ProofPSC = "psc"
	// ProofLinkCode: a one-time link code the practitioner obtained in a
	// session of their own and gave to the app.
	ProofLinkCode = "link_code"
	// ProofSession: the practitioner approved the app from a session of
	// their own.
	ProofSession = "session"
	// ProofInsecure: no proof, under bridge_bind_without_consent_insecure
	// (demos and tests).
	ProofInsecure = "insecure"
	// ProofLegacy: bound before bindings recorded consent.
	ProofLegacy = "legacy"
)

// Binding is a practitioner's consent that an app acts for them.
type Binding struct {
	Kind  string // BindingBridge or BindingAppservice
	AppID string
	// UserID is the practitioner's own user ID (@<idNat>:server).
	UserID  string
	Proof   string
	BoundAt time.Time
}

// BindingFilter selects bindings; empty fields match anything.
type BindingFilter struct {
	Kind, AppID, UserID string
}

// LinkCode is a stored one-time link code. Hash covers the code and the
// user it was issued to, so a code works for that practitioner only.
type LinkCode struct {
	Hash   []byte
	UserID string
	// Door restricts the code to one app ("bridge:<id>",
	// "appservice:<id>"); "" lets any app use it.
	Door      string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// ConsentStore persists bindings and link codes (internal/consent).
type ConsentStore interface {
	// PutBinding records a binding with its proof. An existing binding of
	// the same app and user takes the new proof and time; created
	// reports whether the binding is new. An unknown bridge or
	// appservice is ErrNotFound.
	PutBinding(ctx context.Context, b Binding) (created bool, err error)
	// GetBinding returns one binding (ErrNotFound).
	GetBinding(ctx context.Context, kind, appID, userID string) (*Binding, error)
	// DeleteBinding removes a binding and reports whether one existed.
	DeleteBinding(ctx context.Context, kind, appID, userID string) (bool, error)
	// Bindings lists the bindings matching f, ordered by kind, app and
	// user (bytewise).
	Bindings(ctx context.Context, f BindingFilter) ([]Binding, error)

	// PutLinkCode stores a code. Expired codes of anyone are deleted, and
	// the user keeps at most maxPerUser codes: the oldest go.
	PutLinkCode(ctx context.Context, c LinkCode, maxPerUser int) error
	// TakeLinkCode consumes the code with this hash when it is unexpired
	// at now and usable at door (its Door is "" or door): it is returned
	// once and deleted in the same statement, so of two concurrent takes
	// only one gets it. Anything else is ErrNotFound.
	TakeLinkCode(ctx context.Context, hash []byte, door string, now time.Time) (*LinkCode, error)
}
