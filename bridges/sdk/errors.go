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

// The codes to branch on (ErrNotInDirectory …) are generated in
// errors_gen.go from the hub's one table of codes; docs/refusal-codes.md
// lists them all.

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
