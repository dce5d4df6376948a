package store

import (
	"context"
	"encoding/json"
	"time"
)

// FederationTxnStore remembers the inbound federation transactions
// (PUT /send/{txnId}) already processed, per origin server, with the
// response they got: a replayed transaction is answered from here and
// changes nothing.
type FederationTxnStore interface {
	// FederationTxn returns the response stored for origin's txnID
	// (ErrNotFound if none).
	FederationTxn(ctx context.Context, origin, txnID string) (json.RawMessage, error)
	// PutFederationTxn records a processed transaction; ErrExists if it
	// was already recorded (the first response stays).
	PutFederationTxn(ctx context.Context, origin, txnID string, response json.RawMessage) error
	// PruneFederationTxns forgets transactions recorded before t and
	// returns how many.
	PruneFederationTxns(ctx context.Context, before time.Time) (int64, error)
}

// OutlierReader reads stored events whatever their flags, outside the
// writer: federation serves outliers (auth chains, state) to peers,
// never to clients.
type OutlierReader interface {
	EventsByIDAny(ctx context.Context, ids []string) ([]Event, error)
}
