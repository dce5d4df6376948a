package identity

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the Synapse admin registration API defines HMAC-SHA1
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// ErrBadNonce and ErrBadMAC are the two ways shared-secret registration fails.
var (
	ErrBadNonce = errors.New("identity: unrecognised or expired nonce")
	ErrBadMAC   = errors.New("identity: HMAC incorrect")
)

// SharedSecretRegistrar implements the Synapse-compatible admin
// registration handshake (GET a nonce, POST an HMAC over it), which much
// Matrix tooling uses to provision accounts.
type SharedSecretRegistrar struct {
	secret []byte
	ttl    time.Duration

	mu     sync.Mutex
	nonces map[string]time.Time
}

// NewSharedSecretRegistrar returns nil when secret is empty (disabled).
func NewSharedSecretRegistrar(secret string) *SharedSecretRegistrar {
	if secret == "" {
		return nil
	}
	return &SharedSecretRegistrar{secret: []byte(secret), ttl: 60 * time.Second, nonces: map[string]time.Time{}}
}

// Nonce issues a single-use nonce.
func (r *SharedSecretRegistrar) Nonce() string {
	n := randomString(32)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, exp := range r.nonces {
		if now.After(exp) {
			delete(r.nonces, k)
		}
	}
	r.nonces[n] = now.Add(r.ttl)
	return n
}

// Verify consumes the nonce and checks the MAC.
func (r *SharedSecretRegistrar) Verify(nonce, username, password string, admin bool, macHex string) error {
	r.mu.Lock()
	exp, ok := r.nonces[nonce]
	delete(r.nonces, nonce)
	r.mu.Unlock()
	if !ok || time.Now().After(exp) {
		return ErrBadNonce
	}
	got, err := hex.DecodeString(macHex)
	if err != nil || !hmac.Equal(got, r.MAC(nonce, username, password, admin)) {
		return ErrBadMAC
	}
	return nil
}

// MAC computes the expected HMAC-SHA1 over nonce, user, password and the
// admin flag, NUL-separated, as Synapse defines it.
func (r *SharedSecretRegistrar) MAC(nonce, username, password string, admin bool) []byte {
	m := hmac.New(sha1.New, r.secret)
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write([]byte(username))
	m.Write([]byte{0})
	m.Write([]byte(password))
	m.Write([]byte{0})
	if admin {
		m.Write([]byte("admin"))
	} else {
		m.Write([]byte("notadmin"))
	}
	return m.Sum(nil)
}
