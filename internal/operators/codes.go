package operators

import (
	"errors"
	"fmt"
)

// Bridges, federation and the admin API branch on Code (stable, never
// renumbered or reworded); people read the message. The codes and their
// messages are generated (codes_gen.go) from the hub's one table,
// schemas/codes.json: add a code there, at the end, and run
// `go generate ./internal/codes`. They are sent as `eimis_code` beside
// M_FORBIDDEN, like the trust space's codes in internal/policy.

// Code is a stable refusal code.
type Code string

// Refusal is a check that failed, with a stable code.
type Refusal struct {
	Code Code
	// Subject is what was checked: the operator ID for Check, the server
	// name for CheckServer.
	Subject string
	// Operator is the ID of the operator refused, when one is known (a
	// suspended or revoked operator), so a server refusal can be traced
	// to its operator. Empty otherwise.
	Operator string
}

func (r *Refusal) Error() string {
	msg, ok := messages[r.Code]
	if !ok {
		msg = "%s is refused"
	}
	return fmt.Sprintf(msg, r.Subject)
}

// Definite reports whether the refusal follows from what the registry
// says, as opposed to the registry not being loaded yet. Only definite
// refusals justify tearing down an established connection.
func (r *Refusal) Definite() bool { return r.Code != CodeRegistryUnavailable }

// AsRefusal finds a *Refusal in err's chain.
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}
