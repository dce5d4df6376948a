// Package keys is the federation's signing keys: the key server
// (GET /_matrix/key/v2/server, and the notary's /_matrix/key/v2/query,
// which answers only about servers on the federation list), and the key
// ring that fetches, verifies and keeps remote servers' keys so their
// requests and events can be verified.
//
// Remote keys are kept in the store (store.ServerKeyStore): every key ever
// verified stays, past its validity, because an event signed while the
// key was valid must still verify years later; valid_until_ts is
// honoured when deciding whether a key may verify something signed at a
// given time, and capped at seven days as the specification requires.
package keys

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
)

// MaxValidity caps a remote key response's valid_until_ts: the
// specification has servers use the lesser of it and seven days.
const MaxValidity = 7 * 24 * time.Hour

// ErrNoKey is wrapped when a server's key cannot be had (unknown key ID,
// not valid at the time asked, the server unreachable or refused).
var ErrNoKey = errors.New("no usable signing key")

// Fetcher asks a server for its keys (*federation.Client, whose every
// request is checked against the federation list before dialling).
type Fetcher interface {
	ServerKeys(ctx context.Context, serverName string) (*federation.ServerKeyResponse, error)
}

// Ring fetches and keeps remote servers' signing keys.
type Ring struct {
	st         store.ServerKeyStore
	fetch      Fetcher
	serverName string
	own        signingkey.Key
	// MinRefetch is the least time between two fetches of one server's
	// keys caused by a key it does not publish, so a peer sending bogus
	// key IDs cannot make the hub hammer it (or itself).
	MinRefetch time.Duration
	// Timeout bounds a fetch made for KeyFunc, which has no context.
	Timeout time.Duration
	now     func() time.Time

	mu    sync.Mutex
	locks map[string]*sync.Mutex
	last  map[string]time.Time
}

// NewRing returns a ring over st, fetching with f. serverName and own are
// this hub's, answered without I/O.
func NewRing(st store.ServerKeyStore, f Fetcher, serverName string, own signingkey.Key) *Ring {
	return &Ring{st: st, fetch: f, serverName: serverName, own: own,
		MinRefetch: time.Minute, Timeout: 30 * time.Second, now: time.Now,
		locks: map[string]*sync.Mutex{}, last: map[string]time.Time{}}
}

// VerifyKey returns server's key keyID, if it may verify something
// signed at (or needing validity until) minValidUntil, and until when it
// is valid. Known keys come from the store; an unknown key, or one whose
// known validity is too short, is fetched from the server (at most once
// per MinRefetch for a given server).
func (r *Ring) VerifyKey(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
	if server == r.serverName {
		if string(keyID) != r.own.ID {
			return "", time.Time{}, fmt.Errorf("%w: %s has no key %s", ErrNoKey, server, keyID)
		}
		return id.SigningKey(r.own.PublicBase64()), r.now().Add(MaxValidity), nil
	}
	k, found, err := r.stored(ctx, server, keyID)
	if err != nil {
		return "", time.Time{}, err
	}
	if found && !k.ValidUntil.Before(minValidUntil) {
		return id.SigningKey(k.PublicKey), k.ValidUntil, nil
	}
	if found && !k.ExpiredAt.IsZero() {
		// An old key's validity never grows again.
		return "", time.Time{}, fmt.Errorf("%w: %s key %s expired at %s", ErrNoKey, server, keyID, k.ExpiredAt.Format(time.RFC3339))
	}
	if err := r.refresh(ctx, server, false); err != nil {
		return "", time.Time{}, err
	}
	k, found, err = r.stored(ctx, server, keyID)
	if err != nil {
		return "", time.Time{}, err
	}
	if !found {
		return "", time.Time{}, fmt.Errorf("%w: %s does not publish key %s", ErrNoKey, server, keyID)
	}
	if k.ValidUntil.Before(minValidUntil) {
		return "", time.Time{}, fmt.Errorf("%w: %s key %s is valid until %s only", ErrNoKey, server, keyID, k.ValidUntil.Format(time.RFC3339))
	}
	return id.SigningKey(k.PublicKey), k.ValidUntil, nil
}

// KeyFunc adapts VerifyKey to the room server's rooms.KeyFunc (which has
// no context): each call is bounded by Timeout.
func (r *Ring) KeyFunc() func(serverName string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
	return func(serverName string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
		ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
		defer cancel()
		return r.VerifyKey(ctx, serverName, keyID, minValidUntil)
	}
}

func (r *Ring) stored(ctx context.Context, server string, keyID id.KeyID) (store.ServerKey, bool, error) {
	keys, err := r.st.ServerKeys(ctx, server)
	if err != nil {
		return store.ServerKey{}, false, fmt.Errorf("keys of %s: %w", server, err)
	}
	for _, k := range keys {
		if k.KeyID == string(keyID) {
			// A key the server has since declared old verifies nothing
			// signed after its expiry, whatever it published before.
			if !k.ExpiredAt.IsZero() && k.ExpiredAt.Before(k.ValidUntil) {
				k.ValidUntil = k.ExpiredAt
			}
			return k, true, nil
		}
	}
	return store.ServerKey{}, false, nil
}

func (r *Ring) lock(server string) *sync.Mutex {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.locks[server]
	if !ok {
		l = &sync.Mutex{}
		r.locks[server] = l
	}
	return l
}

// refresh fetches server's keys, verifies and stores them. Unless force,
// a server fetched less than MinRefetch ago is not asked again.
func (r *Ring) refresh(ctx context.Context, server string, force bool) error {
	l := r.lock(server)
	l.Lock()
	defer l.Unlock()
	r.mu.Lock()
	last := r.last[server]
	r.mu.Unlock()
	if !force && !last.IsZero() && r.now().Sub(last) < r.MinRefetch {
		return fmt.Errorf("%w: keys of %s were fetched %s ago", ErrNoKey, server, r.now().Sub(last).Round(time.Second))
	}
	r.mu.Lock()
	r.last[server] = r.now()
	r.mu.Unlock()
	resp, err := r.fetch.ServerKeys(ctx, server)
	if err != nil {
		return fmt.Errorf("%w: fetching keys of %s: %w", ErrNoKey, server, err)
	}
	return r.Accept(ctx, server, resp)
}

// Accept verifies a key response of server (its own, or relayed) and
// stores its keys: it must name server, hold at least one key, and be
// signed by every key it lists as current.
func (r *Ring) Accept(ctx context.Context, server string, resp *federation.ServerKeyResponse) error {
	if resp == nil || resp.ServerName != server {
		return fmt.Errorf("%w: key response of %s names another server", ErrNoKey, server)
	}
	if len(resp.VerifyKeys) == 0 {
		return fmt.Errorf("%w: key response of %s holds no key", ErrNoKey, server)
	}
	if len(resp.Raw) == 0 {
		raw, err := json.Marshal(resp)
		if err != nil {
			return err
		}
		resp.Raw = raw
	}
	for keyID, k := range resp.VerifyKeys {
		if raw, err := base64.RawStdEncoding.DecodeString(string(k.Key)); err != nil || len(raw) != 32 {
			return fmt.Errorf("%w: %s key %s is not an ed25519 key", ErrNoKey, server, keyID)
		}
	}
	if err := resp.VerifySelfSignature(); err != nil {
		return fmt.Errorf("%w: key response of %s: %w", ErrNoKey, server, err)
	}
	validUntil := resp.ValidUntilTS.Time
	if limit := r.now().Add(MaxValidity); validUntil.After(limit) {
		validUntil = limit
	}
	var keys []store.ServerKey
	for keyID, k := range resp.VerifyKeys {
		keys = append(keys, store.ServerKey{ServerName: server, KeyID: string(keyID), PublicKey: string(k.Key), ValidUntil: validUntil})
	}
	for keyID, k := range resp.OldVerifyKeys {
		if _, current := resp.VerifyKeys[keyID]; current || k.ExpiredTS.IsZero() {
			continue
		}
		if raw, err := base64.RawStdEncoding.DecodeString(string(k.Key)); err != nil || len(raw) != 32 {
			continue
		}
		keys = append(keys, store.ServerKey{ServerName: server, KeyID: string(keyID), PublicKey: string(k.Key),
			ValidUntil: k.ExpiredTS.Time, ExpiredAt: k.ExpiredTS.Time})
	}
	if err := r.st.PutServerKeys(ctx, server, keys, resp.Raw, validUntil); err != nil {
		return fmt.Errorf("storing keys of %s: %w", server, err)
	}
	return nil
}

// Response returns server's last self-signed key response, valid until
// at least minValidUntil, fetching a fresh one when the stored one falls
// short (the notary's answer).
func (r *Ring) Response(ctx context.Context, server string, minValidUntil time.Time) (json.RawMessage, error) {
	raw, valid, err := r.st.ServerKeyResponse(ctx, server)
	if err == nil && !valid.Before(minValidUntil) && valid.After(r.now()) {
		return raw, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err := r.refresh(ctx, server, false); err != nil {
		return nil, err
	}
	raw, valid, err = r.st.ServerKeyResponse(ctx, server)
	if err != nil {
		return nil, err
	}
	if valid.Before(minValidUntil) {
		return nil, fmt.Errorf("%w: keys of %s valid until %s only", ErrNoKey, server, valid.Format(time.RFC3339))
	}
	return raw, nil
}
