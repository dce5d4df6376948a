package store

import (
	"context"
)

// AliasStore maps room aliases to room IDs.
type AliasStore interface {
	PutAlias(ctx context.Context, alias, roomID, creator string) error // ErrExists
	ResolveAlias(ctx context.Context, alias string) (string, error)
	DeleteAlias(ctx context.Context, alias string) error
}
