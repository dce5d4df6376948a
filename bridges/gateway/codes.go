package gateway

import (
	"time"

	"github.com/eimis-hub/eimis/internal/policy"
)

// This file is the one list of the Bridge Protocol's own error codes.
// Bridges branch on the code (stable, never renamed); people read the
// message. Refusals of the trust space (EIMIS_NOT_IN_DIRECTORY …, see
// internal/policy/codes.go) and of the operator allow-list
// (EIMIS_OPERATOR_SUSPENDED …, see internal/operators/codes.go) travel
// in the same `code` field with their own codes. Add new codes at the end
// and to docs/bridge-protocol.md.

// Code is a stable error code of an `error` frame.
type Code string

// Protocol error codes.
const (
	// CodeBadFrame: not a JSON object, or a binary frame.
	CodeBadFrame Code = "EIMIS_BAD_FRAME"
	// CodeInvalidField: the frame breaks its JSON Schema; `field` is the
	// JSON pointer of the offending value.
	CodeInvalidField Code = "EIMIS_INVALID_FIELD"
	// CodeUnknownType: no frame of this type goes from a bridge to the hub.
	CodeUnknownType Code = "EIMIS_UNKNOWN_TYPE"
	// CodeUnsupportedVersion: the hello names a protocol version the hub
	// does not speak; send another hello.
	CodeUnsupportedVersion Code = "EIMIS_UNSUPPORTED_VERSION"
	// CodeFrameTooLarge: the frame exceeds max_frame_bytes. A frame far
	// beyond it also closes the connection (close code 1009).
	CodeFrameTooLarge Code = "EIMIS_FRAME_TOO_LARGE"
	// CodeHelloRequired: the first frame must be a hello.
	CodeHelloRequired Code = "EIMIS_HELLO_REQUIRED"
	// CodeDuplicateHello: a second hello on an established connection.
	CodeDuplicateHello Code = "EIMIS_DUPLICATE_HELLO"
	// CodeBadToken: no bridge has this token. The connection closes.
	CodeBadToken Code = "EIMIS_BAD_TOKEN"
	// CodeBridgeRevoked: the bridge was revoked (eimis-hub bridge revoke).
	CodeBridgeRevoked Code = "EIMIS_BRIDGE_REVOKED"
	// CodeNotBound: the request acts for a user this bridge has not bound.
	CodeNotBound Code = "EIMIS_NOT_BOUND"
	// CodeForbidden: the room's rules refuse the action (not a member, no
	// power, not the author of the message being edited…).
	CodeForbidden Code = "EIMIS_FORBIDDEN"
	// CodeUnknownRoom: the hub does not know this room.
	CodeUnknownRoom Code = "EIMIS_UNKNOWN_ROOM"
	// CodeUnknownEvent: the event referred to is not in the room.
	CodeUnknownEvent Code = "EIMIS_UNKNOWN_EVENT"
	// CodeUnknownUser: the user named has no account and cannot get one.
	CodeUnknownUser Code = "EIMIS_UNKNOWN_USER"
	// CodeEventTooLarge: the resulting Matrix event exceeds 64 KiB.
	CodeEventTooLarge Code = "EIMIS_EVENT_TOO_LARGE"
	// CodeBadEvent: the hub could not build the event from the request.
	CodeBadEvent Code = "EIMIS_BAD_EVENT"
	// CodeBadCursor: an ack names a cursor that was never delivered.
	CodeBadCursor Code = "EIMIS_BAD_CURSOR"
	// CodeUnsupported: the hub does not offer this (e.g. upload without
	// a media store).
	CodeUnsupported Code = "EIMIS_UNSUPPORTED"
	// CodePSCProofRequired: this hub binds practitioners only with a Pro
	// Santé Connect proof (bridge_require_psc_proof).
	CodePSCProofRequired = Code(policy.PSCProofRequired)
	// CodePSCProofInvalid: the Pro Santé Connect proof was refused.
	CodePSCProofInvalid = Code(policy.PSCProofInvalid)
	// CodeSlowConsumer: the bridge neither read nor acknowledged its
	// events for too long. The connection closes; nothing is lost.
	CodeSlowConsumer Code = "EIMIS_SLOW_CONSUMER"
	// CodeReplaced: another connection of the same bridge took over.
	CodeReplaced Code = "EIMIS_REPLACED"
	// CodeShuttingDown: the hub instance is stopping; reconnect.
	CodeShuttingDown Code = "EIMIS_SHUTTING_DOWN"
	// CodeUnavailable: a dependency of the hub failed; retry later.
	CodeUnavailable Code = "EIMIS_UNAVAILABLE"
	// CodeInternal: a bug or an unexpected failure; the hub logged it.
	CodeInternal Code = "EIMIS_INTERNAL"
	// CodeUploadRefused: the media store refused the file (too large,
	// not storable).
	CodeUploadRefused Code = "EIMIS_UPLOAD_REFUSED"
	// CodeRateLimited: the bridge exceeded its operator's rate limit for
	// this kind of request; the error carries retry_after_ms.
	CodeRateLimited Code = "EIMIS_RATE_LIMITED"
	// CodeConsentRequired: bind gave no proof of the practitioner's
	// consent and the bridge has no binding of them yet. The consent
	// codes are the hub's (internal/policy/codes.go), listed here too
	// because bridges meet them.
	CodeConsentRequired = Code(policy.ConsentRequired)
	// CodeLinkCodeInvalid: the link code is unknown, used, expired,
	// another practitioner's or restricted to another app.
	CodeLinkCodeInvalid = Code(policy.LinkCodeInvalid)
	// CodeLinkCodeAttempts: too many wrong link codes from this bridge;
	// link-code binds are refused for a while.
	CodeLinkCodeAttempts = Code(policy.LinkCodeAttempts)
	// CodeBindingRevoked (in user_revoked): the practitioner or an
	// operator revoked the binding.
	CodeBindingRevoked = Code(policy.BindingRevoked)
)

// messages are the default human texts.
var messages = map[Code]string{
	CodeBadFrame:           "a frame must be one JSON object in a text message",
	CodeInvalidField:       "the frame does not match its schema",
	CodeUnknownType:        "unknown frame type",
	CodeUnsupportedVersion: "unsupported protocol version; this hub speaks version 1",
	CodeFrameTooLarge:      "frame too large",
	CodeHelloRequired:      "the first frame must be a hello",
	CodeDuplicateHello:     "hello was already received on this connection",
	CodeBadToken:           "unknown bridge token",
	CodeBridgeRevoked:      "this bridge was revoked",
	CodeNotBound:           "this bridge does not act for this user; bind them first",
	CodeForbidden:          "forbidden by the room's rules",
	CodeUnknownRoom:        "unknown room",
	CodeUnknownEvent:       "unknown event",
	CodeUnknownUser:        "unknown user",
	CodeEventTooLarge:      "the event would be too large",
	CodeBadEvent:           "the event cannot be built",
	CodeBadCursor:          "this cursor was never delivered on this connection",
	CodeUnsupported:        "not supported by this hub",
	CodePSCProofRequired:   "this hub binds practitioners only with a Pro Santé Connect proof (psc_proof)",
	CodePSCProofInvalid:    "the Pro Santé Connect proof was refused",
	CodeSlowConsumer:       "the bridge did not read or acknowledge its events in time; reconnect to resume",
	CodeReplaced:           "another connection of this bridge took over",
	CodeShuttingDown:       "the hub is shutting down; reconnect",
	CodeUnavailable:        "temporarily unavailable; retry later",
	CodeInternal:           "internal error",
	CodeUploadRefused:      "the media store refused the file",
	CodeRateLimited:        "too many requests of this kind from this bridge; retry after retry_after_ms",
	CodeConsentRequired:    "the practitioner has not consented to this bridge acting for them: bind with a link_code or a psc_proof",
	CodeLinkCodeInvalid:    "the link code is unknown, used, expired or meant for another app",
	CodeLinkCodeAttempts:   "too many wrong link codes from this bridge; try again later",
	CodeBindingRevoked:     "the binding of this practitioner was revoked",
}

// Message is the default text of a code.
func (c Code) Message() string {
	if m, ok := messages[c]; ok {
		return m
	}
	return string(c)
}

// Error is a refusal sent to the bridge as an `error` frame.
type Error struct {
	Code    string
	Message string
	// Field is the JSON pointer of the field at fault, or "".
	Field string
	// RetryAfter is, for EIMIS_RATE_LIMITED, how long to wait.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// errf returns an Error with the code's default message unless msg is set.
func errf(code Code, field, msg string) *Error {
	if msg == "" {
		msg = code.Message()
	}
	return &Error{Code: string(code), Message: msg, Field: field}
}
