package gateway

import "time"

// Bridges branch on the code (stable, never renamed); people read the
// message. The codes, their default texts and which of them are refusals
// are generated (codes_gen.go) from the hub's one table,
// schemas/codes.json, with the trust space's, the allow-list's and the
// consent codes they share with internal/policy and internal/operators:
// add a code there, at the end, and run `go generate ./internal/codes`.

// Code is a stable error code of an `error` frame.
type Code string

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
