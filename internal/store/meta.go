package store

import (
	"context"
)

// MetaStore is a key/value store for small hub-level facts (e.g. the
// schema owner's notes).
type MetaStore interface {
	GetMeta(ctx context.Context, key string) (string, error)
	PutMeta(ctx context.Context, key, value string) error
}
