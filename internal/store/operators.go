package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// OperatorStatus is where an operator stands on the allow-list.
type OperatorStatus string

// Operator statuses. Revoked is final: the store refuses any status change
// of a revoked operator, so a revocation cannot be undone by a slip of the
// CLI; a vendor that comes back is registered under a new ID.
const (
	OperatorActive    OperatorStatus = "active"
	OperatorSuspended OperatorStatus = "suspended"
	OperatorRevoked   OperatorStatus = "revoked"
)

// Valid reports whether s is one of the three statuses.
func (s OperatorStatus) Valid() bool {
	switch s {
	case OperatorActive, OperatorSuspended, OperatorRevoked:
		return true
	}
	return false
}

// ErrRevoked is returned by SetOperatorStatus for a revoked operator.
var ErrRevoked = errors.New("store: operator revoked; revocation is final")

// Operator is an organisation (messenger vendor, hospital group) allowed
// to connect bridges or federate with the hub. The store does not
// validate the fields' syntax (the operators package does); it enforces
// uniqueness of ID and of each server name, and the status rules.
type Operator struct {
	ID   string
	Name string
	// ServerNames are the Matrix server names the operator runs, sorted.
	// A server name belongs to at most one operator, revoked ones
	// included: a revoked operator's servers stay refused.
	ServerNames  []string
	Contact      string
	Status       OperatorStatus
	StatusReason string
	// CreatedAt and UpdatedAt are set by the store; UpdatedAt moves at
	// every status change.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ServerClaimedError is returned (wrapped) by AddOperator when one of the
// new operator's server names already belongs to an operator. It matches
// ErrExists with errors.Is.
type ServerClaimedError struct {
	ServerName string
	Owner      string // the ID of the operator holding it
}

func (e *ServerClaimedError) Error() string {
	return fmt.Sprintf("server name %s already belongs to operator %s", e.ServerName, e.Owner)
}

// Is makes errors.Is(err, ErrExists) true, so callers that only care
// about "already exists" need not know this type.
func (e *ServerClaimedError) Is(target error) bool { return target == ErrExists }

// OperatorStore persists the operator allow-list.
type OperatorStore interface {
	// AddOperator inserts o with its server names in one transaction and
	// returns it as stored (timestamps set, ServerNames sorted). An empty
	// Status means active. A duplicate ID is ErrExists; a server name
	// already claimed is a *ServerClaimedError (which is ErrExists too).
	AddOperator(ctx context.Context, o Operator) (*Operator, error)
	GetOperator(ctx context.Context, id string) (*Operator, error) // ErrNotFound
	// ListOperators returns every operator, ordered by ID.
	ListOperators(ctx context.Context) ([]Operator, error)
	// SetOperatorStatus changes an operator's status and reason in one
	// transaction that holds the row, so the revoked-is-final rule cannot
	// be raced: it returns ErrRevoked for a revoked operator (whatever the
	// new status), ErrNotFound for an unknown one. Setting the status an
	// operator already has is allowed and replaces the reason. It returns
	// the operator as updated and the status it had before.
	SetOperatorStatus(ctx context.Context, id string, status OperatorStatus, reason string) (*Operator, OperatorStatus, error)
	// OperatorByServerName finds the operator running a Matrix server
	// name (exact match), ErrNotFound when none does.
	OperatorByServerName(ctx context.Context, serverName string) (*Operator, error)
}
