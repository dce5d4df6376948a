package store

import (
	"context"
	"time"
)

// ServerKey is one public signing key of a remote Matrix server, as its
// key server published it (self-signed) and the federation key client
// verified it.
type ServerKey struct {
	ServerName string
	KeyID      string // "ed25519:abc"
	PublicKey  string // unpadded base64
	// ValidUntil is how long the key may be used to verify what the
	// server signs (valid_until_ts); a key is kept after that, to verify
	// events signed while it was valid.
	ValidUntil time.Time
	// ExpiredAt is set for a key the server listed in old_verify_keys:
	// it signed nothing after that.
	ExpiredAt time.Time
}

// ServerKeyStore keeps remote servers' signing keys (federation/keys):
// every key ever verified, so old events stay verifiable, and the last
// self-signed key response of each server, served again by the notary.
type ServerKeyStore interface {
	// PutServerKeys records keys verified from one response of
	// serverName, and the response itself (its canonical JSON) valid
	// until validUntil. A key already known keeps its public key (a
	// server reusing a key ID for another key is not believed); its
	// ValidUntil only grows and its ExpiredAt is set once known.
	PutServerKeys(ctx context.Context, serverName string, keys []ServerKey, response []byte, validUntil time.Time) error
	// ServerKeys returns every known key of serverName, by key ID.
	ServerKeys(ctx context.Context, serverName string) ([]ServerKey, error)
	// ServerKeyResponse returns the last response stored for serverName
	// and until when it is valid; ErrNotFound when none.
	ServerKeyResponse(ctx context.Context, serverName string) ([]byte, time.Time, error)
}
