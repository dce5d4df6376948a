package store

import "github.com/eimis-hub/eimis/internal/errclass"

// The store's sentinels have fixed texts: logs may name them.
func init() {
	errclass.Register(ErrNotFound, ErrExists, ErrImportSuperseded, ErrAuditHash, ErrRevoked)
}
