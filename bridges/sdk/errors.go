package sdk

import (
	"errors"
	"time"
)

// Error is the hub's refusal of a request or of the connection. Branch
// on Code (stable); show Message to people. errors.Is compares codes, so
//
//	if errors.Is(err, sdk.ErrInactivePractitioner) { … }
//
// works on any error a Client method returns.
type Error struct {
	Code    string
	Message string
	// Field is the JSON pointer of the request field at fault (schema
	// violations, refused invitees …), or "".
	Field string
	// RetryAfter is, for ErrRateLimited, how long to wait before
	// retrying.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := "eimis: " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Field != "" {
		s += " (at " + e.Field + ")"
	}
	return s
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Codes worth branching on; docs/bridge-protocol.md lists them all.
var (
	// The trust space refused a practitioner.
	ErrNotInDirectory       = &Error{Code: "EIMIS_NOT_IN_DIRECTORY"}
	ErrInactivePractitioner = &Error{Code: "EIMIS_INACTIVE_PRACTITIONER"}
	ErrProfessionNotAllowed = &Error{Code: "EIMIS_PROFESSION_NOT_ALLOWED"}
	ErrNotAPractitionerID   = &Error{Code: "EIMIS_NOT_A_PRACTITIONER_ID"}
	ErrDirectoryUnavailable = &Error{Code: "EIMIS_DIRECTORY_UNAVAILABLE"}
	ErrForeignServer        = &Error{Code: "EIMIS_FOREIGN_SERVER"}

	// The connection was refused or ended by the hub.
	ErrBadToken          = &Error{Code: "EIMIS_BAD_TOKEN"}
	ErrBridgeRevoked     = &Error{Code: "EIMIS_BRIDGE_REVOKED"}
	ErrOperatorSuspended = &Error{Code: "EIMIS_OPERATOR_SUSPENDED"}
	ErrOperatorRevoked   = &Error{Code: "EIMIS_OPERATOR_REVOKED"}
	ErrUnknownOperator   = &Error{Code: "EIMIS_UNKNOWN_OPERATOR"}
	ErrSlowConsumer      = &Error{Code: "EIMIS_SLOW_CONSUMER"}
	ErrReplaced          = &Error{Code: "EIMIS_REPLACED"}

	// A request was refused.
	ErrInvalidField   = &Error{Code: "EIMIS_INVALID_FIELD"}
	ErrNotBound       = &Error{Code: "EIMIS_NOT_BOUND"}
	ErrForbidden      = &Error{Code: "EIMIS_FORBIDDEN"}
	ErrUnknownRoom    = &Error{Code: "EIMIS_UNKNOWN_ROOM"}
	ErrUnknownEvent   = &Error{Code: "EIMIS_UNKNOWN_EVENT"}
	ErrUnknownUser    = &Error{Code: "EIMIS_UNKNOWN_USER"}
	ErrFrameTooLarge  = &Error{Code: "EIMIS_FRAME_TOO_LARGE"}
	ErrUnsupported    = &Error{Code: "EIMIS_UNSUPPORTED"}
	ErrUnavailable    = &Error{Code: "EIMIS_UNAVAILABLE"}
	ErrPSCProofNeeded = &Error{Code: "EIMIS_PSC_PROOF_REQUIRED"}
	// ErrRateLimited: the bridge's operator limit; wait RetryAfter.
	ErrRateLimited = &Error{Code: "EIMIS_RATE_LIMITED"}

	// The practitioner's consent is missing or its proof was refused.
	ErrConsentRequired  = &Error{Code: "EIMIS_CONSENT_REQUIRED"}
	ErrLinkCodeInvalid  = &Error{Code: "EIMIS_LINK_CODE_INVALID"}
	ErrLinkCodeAttempts = &Error{Code: "EIMIS_LINK_CODE_ATTEMPTS"}
	ErrPSCProofInvalid  = &Error{Code: "EIMIS_PSC_PROOF_INVALID"}
	// ErrBindingRevoked is the code of a UserRevoked when the practitioner
	// or an operator revoked the binding.
	ErrBindingRevoked = &Error{Code: "EIMIS_BINDING_REVOKED"}
)

// ErrDisconnected: the connection ended before the hub answered. The
// request may or may not have been carried out; retry it (a Send or Edit
// retried with the same TxnID is one event).
var ErrDisconnected = errors.New("eimis: disconnected before the answer")

// fatal codes end Run: retrying cannot succeed without a person acting.
var fatal = map[string]bool{
	ErrBadToken.Code: true, ErrBridgeRevoked.Code: true, ErrOperatorRevoked.Code: true, ErrUnknownOperator.Code: true,
}

// Fatal reports whether err means Run cannot succeed by retrying: the
// token is wrong, the bridge or its operator revoked.
func Fatal(err error) bool {
	var e *Error
	return errors.As(err, &e) && fatal[e.Code]
}
