package policy

// This file is the one list of the hub's refusal reasons. Clients and
// bridges branch on Code (stable, never renumbered or reworded); people
// read Message. Add new codes at the end.

// Code is a stable refusal code, sent as `eimis_code` beside M_FORBIDDEN.
type Code string

// Refusal codes.
const (
	NotAPractitionerID   Code = "EIMIS_NOT_A_PRACTITIONER_ID"
	NotInDirectory       Code = "EIMIS_NOT_IN_DIRECTORY"
	InactivePractitioner Code = "EIMIS_INACTIVE_PRACTITIONER"
	ProfessionNotAllowed Code = "EIMIS_PROFESSION_NOT_ALLOWED"
	DirectoryUnavailable Code = "EIMIS_DIRECTORY_UNAVAILABLE"
	ForeignServer        Code = "EIMIS_FOREIGN_SERVER"
	// ResponsibleRefused: an organisational or applicative account whose
	// responsible practitioner is not (or no longer) authorised.
	ResponsibleRefused Code = "EIMIS_RESPONSIBLE_NOT_AUTHORISED"
	// AdminAccount: administration accounts run the hub; they do not take
	// part in care conversations.
	AdminAccount Code = "EIMIS_ADMIN_ACCOUNT"
	// DisplayNameLocked: display names come from the health directory.
	DisplayNameLocked Code = "EIMIS_DISPLAY_NAME_FROM_DIRECTORY"
	// ConsentRequired: an app (a bridge, an appservice's puppet) may act
	// for a practitioner only with their consent, and has none.
	ConsentRequired Code = "EIMIS_CONSENT_REQUIRED"
	// LinkCodeInvalid: the link code is unknown, used, expired, issued to
	// another practitioner or restricted to another app.
	LinkCodeInvalid Code = "EIMIS_LINK_CODE_INVALID"
	// LinkCodeAttempts: too many wrong link codes from this app; it may
	// try again later.
	LinkCodeAttempts Code = "EIMIS_LINK_CODE_ATTEMPTS"
	// PSCProofRequired: this hub takes only Pro Santé Connect proofs of
	// consent from bridges (bridge_require_psc_proof). The Bridge
	// Protocol has the same code.
	PSCProofRequired Code = "EIMIS_PSC_PROOF_REQUIRED"
	// PSCProofInvalid: the Pro Santé Connect proof was refused (or this
	// hub has no Pro Santé Connect to check it).
	PSCProofInvalid Code = "EIMIS_PSC_PROOF_INVALID"
	// BindingRevoked: the practitioner (or an operator) revoked the app's
	// binding.
	BindingRevoked Code = "EIMIS_BINDING_REVOKED"
)

// messages are the human texts; %s is the subject (an idNat or user ID).
var messages = map[Code]string{
	NotAPractitionerID:   "%s is not a health professional's identifier (expected @<idNat>:server, idNat = 8 + RPPS)",
	NotInDirectory:       "practitioner %s is not in the health directory",
	InactivePractitioner: "practitioner %s is not active in the health directory",
	ProfessionNotAllowed: "practitioner %s has no profession allowed to exchange care information on this hub",
	DirectoryUnavailable: "the health directory is not loaded yet; %s cannot be checked",
	ForeignServer:        "%s belongs to another server",
	ResponsibleRefused:   "%s: the practitioner responsible for this account is not authorised on this hub",
	AdminAccount:         "%s is an administration account and cannot take part in conversations",
	DisplayNameLocked:    "the display name of %s comes from the health directory and cannot be changed",
	ConsentRequired:      "%s: the practitioner has not consented to this app acting for them (they give a link code from a session of their own, or a Pro Santé Connect proof)",
	LinkCodeInvalid:      "the link code for %s is unknown, used, expired or meant for another app",
	LinkCodeAttempts:     "too many wrong link codes from %s; try again later",
	PSCProofRequired:     "this hub binds %s only with a Pro Santé Connect proof (psc_proof)",
	PSCProofInvalid:      "the Pro Santé Connect proof for %s was refused",
	BindingRevoked:       "the binding of %s to this app was revoked",
}
