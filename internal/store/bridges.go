package store

import (
	"context"
	"time"
)

// Bridge is a vendor's connection credential for the Bridge Protocol: an
// operator of the allow-list may run several bridges (one per product or
// environment), each with its own token. Only the token's SHA-256 is
// stored, as for access tokens.
type Bridge struct {
	ID         string
	OperatorID string
	TokenHash  []byte
	CreatedAt  time.Time
	// RevokedAt is zero while the bridge may connect. Revocation is
	// final: a vendor that needs a new token adds a new bridge.
	RevokedAt time.Time
}

// Revoked reports whether the bridge was revoked.
func (b *Bridge) Revoked() bool { return !b.RevokedAt.IsZero() }

// BridgeStore persists bridges and the practitioners each one acts for.
type BridgeStore interface {
	// AddBridge inserts b (CreatedAt set by the store when zero). A
	// duplicate ID or token hash is ErrExists; an unknown operator is
	// ErrNotFound.
	AddBridge(ctx context.Context, b Bridge) (*Bridge, error)
	GetBridge(ctx context.Context, id string) (*Bridge, error) // ErrNotFound
	// BridgeByTokenHash finds the bridge a token belongs to, revoked or
	// not (the caller refuses revoked ones with their own reason).
	BridgeByTokenHash(ctx context.Context, tokenHash []byte) (*Bridge, error) // ErrNotFound
	// ListBridges returns every bridge, ordered by ID.
	ListBridges(ctx context.Context) ([]Bridge, error)
	// RevokeBridge marks a bridge revoked and returns it. Revoking a
	// revoked bridge keeps the first revocation time. ErrNotFound for an
	// unknown ID.
	RevokeBridge(ctx context.Context, id string) (*Bridge, error)

	// Bindings are made with a proof of consent: ConsentStore.PutBinding.

	// UnbindBridgeUser removes a binding and reports whether one existed.
	UnbindBridgeUser(ctx context.Context, bridgeID, userID string) (bool, error)
	// BridgeUsers lists the users a bridge acts for, sorted, whatever
	// their binding's proof (ConsentStore.Bindings tells it).
	BridgeUsers(ctx context.Context, bridgeID string) ([]string, error)
	// UserBridges lists the bridges acting for a user, sorted.
	UserBridges(ctx context.Context, userID string) ([]string, error)

	// MembershipAt is the user's membership of a room as of stream
	// position pos (the membership event at pos included): "" when the
	// user had none. A bridge replaying its backlog decides with it
	// whether a past event concerned one of its users, even if that user
	// has left the room since.
	MembershipAt(ctx context.Context, roomID, userID string, pos int64) (string, error)
}
