package operators

import (
	"errors"
	"fmt"
)

// This file is the one list of the operator registry's refusal reasons.
// Bridges, federation and the admin API branch on Code (stable, never
// renumbered or reworded); people read the message. Add new codes at the
// end. They are sent as `eimis_code` beside M_FORBIDDEN, like the trust
// space's codes in internal/policy.

// Code is a stable refusal code.
type Code string

// Refusal codes.
const (
	// CodeUnknownOperator: no operator has this ID.
	CodeUnknownOperator Code = "EIMIS_UNKNOWN_OPERATOR"
	// CodeOperatorSuspended: the operator is suspended (may come back).
	CodeOperatorSuspended Code = "EIMIS_OPERATOR_SUSPENDED"
	// CodeOperatorRevoked: the operator is revoked, for good.
	CodeOperatorRevoked Code = "EIMIS_OPERATOR_REVOKED"
	// CodeUnknownServer: the Matrix server name is not on the allow-list.
	CodeUnknownServer Code = "EIMIS_UNKNOWN_SERVER"
	// CodeRegistryUnavailable: the registry has not been loaded yet, so
	// nothing can be checked and everything is refused (deny when unsure).
	CodeRegistryUnavailable Code = "EIMIS_OPERATORS_UNAVAILABLE"
)

// messages are the human texts; %s is the subject (an operator ID or a
// server name).
var messages = map[Code]string{
	CodeUnknownOperator:     "%s is not a registered operator",
	CodeOperatorSuspended:   "%s: the operator is suspended",
	CodeOperatorRevoked:     "%s: the operator's registration is revoked",
	CodeUnknownServer:       "server %s is not on the operator allow-list",
	CodeRegistryUnavailable: "the operator registry is not loaded yet; %s cannot be checked",
}

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
