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
	// NotServerAdmin: the admin API is for the hub's admin accounts.
	NotServerAdmin Code = "EIMIS_NOT_A_SERVER_ADMIN"
	// Pro Santé Connect login failures (the SSO callback), one per cause.
	PSCRefusedByProvider Code = "EIMIS_PSC_REFUSED_BY_PROVIDER"
	PSCUnknownState      Code = "EIMIS_PSC_UNKNOWN_STATE"
	PSCWrongACR          Code = "EIMIS_PSC_WRONG_ACR"
	PSCBadNonce          Code = "EIMIS_PSC_BAD_NONCE"
	PSCBadIDNat          Code = "EIMIS_PSC_BAD_IDNAT"
	PSCInvalidToken      Code = "EIMIS_PSC_INVALID_TOKEN"
	PSCProviderError     Code = "EIMIS_PSC_PROVIDER_ERROR"
	PSCError             Code = "EIMIS_PSC_ERROR"
	// NotYourData: filters, account data and tags are the caller's own.
	NotYourData Code = "EIMIS_NOT_YOUR_DATA"
	// RateLimited: a rate limit refused the request (429
	// M_LIMIT_EXCEEDED with retry_after_ms on the Client-Server API).
	RateLimited Code = "EIMIS_RATE_LIMITED"
	// BadCredentials: a password login failed (audited with the account
	// named, never the password).
	BadCredentials Code = "EIMIS_BAD_CREDENTIALS"
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
	NotServerAdmin:       "%s is not a server admin",
	PSCRefusedByProvider: "Pro Santé Connect refused or cancelled the login%.0s",
	PSCUnknownState:      "the Pro Santé Connect login attempt is unknown or expired%.0s",
	PSCWrongACR:          "Pro Santé Connect did not give the required authentication level%.0s",
	PSCBadNonce:          "the Pro Santé Connect answer does not match the login attempt%.0s",
	PSCBadIDNat:          "Pro Santé Connect gave no valid practitioner identifier%.0s",
	PSCInvalidToken:      "the Pro Santé Connect token is invalid%.0s",
	PSCProviderError:     "Pro Santé Connect could not be reached or answered wrongly%.0s",
	PSCError:             "the Pro Santé Connect login failed%.0s",
	NotYourData:          "%s is another user: filters, account data and tags are your own",
	RateLimited:          "too many requests from %s; retry later",
	BadCredentials:       "invalid username or password for %s",
	ConsentRequired:      "%s: the practitioner has not consented to this app acting for them (they give a link code from a session of their own, or a Pro Santé Connect proof)",
	LinkCodeInvalid:      "the link code for %s is unknown, used, expired or meant for another app",
	LinkCodeAttempts:     "too many wrong link codes from %s; try again later",
	PSCProofRequired:     "this hub binds %s only with a Pro Santé Connect proof (psc_proof)",
	PSCProofInvalid:      "the Pro Santé Connect proof for %s was refused",
	BindingRevoked:       "the binding of %s to this app was revoked",
}
