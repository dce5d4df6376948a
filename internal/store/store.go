// Package store is the hub's persistence seam. Two dialects implement it
// (sqlite for the embedded default, postgres for production) and one
// conformance suite (storetest) holds both to the same behaviour.
//
// Positions: every row that /sync must notice (events, account data,
// receipts) takes its position from one hub-wide, strictly increasing
// sequence. Positions are only allocated inside a write that holds the
// store's global stream lock, so positions become visible in commit order:
// a reader that sees position N has already seen every position below N.
// That is what makes a single integer a correct /sync token across several
// hub instances sharing one database.
package store

import (
	"context"
	"errors"
	"strings"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
)

// LikePattern escapes term for a LIKE … ESCAPE '\' pattern matching it
// anywhere, so a user's "%" or "_" is not a wildcard.
func LikePattern(term string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(term)) + "%"
}

// Store is everything the hub persists: every owner's interface. Both
// dialects implement it; consumers take the narrow interface they need.
// Implementations must be safe for concurrent use.
type Store interface {
	// Ping checks the database is reachable (readiness).
	Ping(ctx context.Context) error
	Close() error

	AccountStore
	EventStore
	SyncStore
	AliasStore
	OutboxStore
	MetaStore
	DirectoryStore
	AuditStore
	OperatorStore
	TrustStore
	BridgeStore
	AppserviceStore
	HistoryStore
	ConsentStore
	DAGReader
	ServerKeyStore
	FederationTxnStore
	OutlierReader
}
