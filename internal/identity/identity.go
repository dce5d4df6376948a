// Package identity owns local accounts, devices and access tokens.
//
// Access tokens are random 256-bit values handed to the client once; only
// their SHA-256 is stored, so a leaked database does not leak sessions.
// Passwords are bcrypt-hashed.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

// Errors callers branch on.
var (
	ErrInvalidLocalpart = errors.New("identity: invalid localpart")
	ErrBadCredentials   = errors.New("identity: invalid username or password")
	ErrUnknownToken     = errors.New("identity: unknown access token")
	ErrUserExists       = errors.New("identity: user already exists")
	// ErrNotAdmitted wraps the trust space's refusal of an account.
	ErrNotAdmitted = errors.New("identity: not admitted")
)

// tokenCacheTTL bounds how long a token stays valid on this instance after
// it was revoked on another one sharing the database. Logout on the same
// instance evicts immediately.
const tokenCacheTTL = 10 * time.Second

// Session is an authenticated request's identity.
type Session struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	Admin    bool
	// Appservice is the ID of the application service acting as UserID
	// with its as_token (bridges/appservice), or "" for an access token.
	// Such a session has no device: DeviceID is empty.
	Appservice string
}

// Service is the account and session authority.
type Service struct {
	store      store.AccountStore
	serverName string
	bcryptCost int

	mu    sync.Mutex
	cache map[[32]byte]cachedSession

	// announce, when set, tells the other instances sharing the database
	// that sessions were revoked, so their caches drop them at once rather
	// than after tokenCacheTTL.
	announce func(Revocation)

	admission Admission

	appservices AppserviceTokens
}

// AppserviceTokens resolves application services' as_tokens
// (bridges/appservice): ok is false for any other token.
type AppserviceTokens interface {
	Authenticate(ctx context.Context, token string, userID id.UserID) (s Session, ok bool, err error)
}

// SetAppservices makes Authenticate accept as_tokens, as the appservice's
// sender: for callers that only see a token (the media repository), an
// appservice is its sender. The Client-Server API resolves as_tokens
// itself first, with the ?user_id= the appservice acts as.
func (s *Service) SetAppservices(a AppserviceTokens) { s.appservices = a }

// Admission is the trust space's say over accounts (the policy engine):
// who may have one and log in, and under which name.
type Admission interface {
	CheckLogin(u id.UserID) error
	DisplayName(u id.UserID) (string, bool)
}

// SetAdmission makes every account creation and Admit call go through a.
// Without it (tools, unit tests) anyone may have an account.
func (s *Service) SetAdmission(a Admission) { s.admission = a }

// Admit decides whether u may log in now.
func (s *Service) Admit(u id.UserID) error {
	if s.admission == nil {
		return nil
	}
	return s.admission.CheckLogin(u)
}

// Revocation names sessions revoked on one instance: one device, or every
// device of the user when DeviceID is empty.
type Revocation struct {
	UserID   id.UserID   `json:"user_id"`
	DeviceID id.DeviceID `json:"device_id,omitempty"`
}

// OnRevoke sets how revocations are announced to other instances.
func (s *Service) OnRevoke(announce func(Revocation)) { s.announce = announce }

// Revoked drops cached sessions revoked on another instance.
func (s *Service) Revoked(r Revocation) {
	s.forget(func(c Session) bool {
		return c.UserID == r.UserID && (r.DeviceID == "" || c.DeviceID == r.DeviceID)
	})
}

type cachedSession struct {
	s       Session
	expires time.Time
}

// New returns a Service. bcryptCost 0 means bcrypt.DefaultCost.
func New(st store.AccountStore, serverName string, bcryptCost int) *Service {
	if bcryptCost == 0 {
		bcryptCost = bcrypt.DefaultCost
	}
	return &Service{store: st, serverName: serverName, bcryptCost: bcryptCost, cache: map[[32]byte]cachedSession{}}
}

// ServerName is the Matrix server name of local users.
func (s *Service) ServerName() string { return s.serverName }

// UserID builds the local user ID of a localpart.
func (s *Service) UserID(localpart string) id.UserID {
	return id.NewUserID(localpart, s.serverName)
}

// ValidateLocalpart applies the Matrix user ID grammar for new accounts
// (lower-case historical character set, bounded length).
func ValidateLocalpart(lp string) error {
	if lp == "" || len(lp) > 200 {
		return fmt.Errorf("%w: length must be 1..200", ErrInvalidLocalpart)
	}
	for _, c := range lp {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.ContainsRune("._=-/+", c):
		default:
			return fmt.Errorf("%w: character %q not allowed", ErrInvalidLocalpart, c)
		}
	}
	return nil
}

// LocalpartOf returns the localpart of a local user ID, or an error if the
// ID is malformed or belongs to another server.
func (s *Service) LocalpartOf(u id.UserID) (string, error) {
	lp, hs, err := u.Parse()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidLocalpart, err)
	}
	if hs != s.serverName {
		return "", fmt.Errorf("%w: %s is not a user of this server", ErrInvalidLocalpart, u)
	}
	return lp, nil
}

// CreateAccount registers a local account. An empty password disables
// password login for it (SSO-only accounts later).
func (s *Service) CreateAccount(ctx context.Context, localpart, password string, admin bool) (id.UserID, error) {
	localpart = strings.ToLower(localpart)
	if err := ValidateLocalpart(localpart); err != nil {
		return "", err
	}
	uid := s.UserID(localpart)
	if err := s.Admit(uid); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotAdmitted, err)
	}
	displayName := localpart
	if s.admission != nil {
		if name, ok := s.admission.DisplayName(uid); ok {
			displayName = name
		}
	}
	var hash string
	if password != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost)
		if err != nil {
			return "", fmt.Errorf("hash password: %w", err)
		}
		hash = string(h)
	}
	err := s.store.CreateAccount(ctx, store.Account{
		Localpart: localpart, PasswordHash: hash, Admin: admin, DisplayName: displayName, CreatedAt: time.Now(),
	})
	if errors.Is(err, store.ErrExists) {
		return "", ErrUserExists
	} else if err != nil {
		return "", err
	}
	return s.UserID(localpart), nil
}

// CheckPassword verifies a localpart's password.
func (s *Service) CheckPassword(ctx context.Context, localpart, password string) (*store.Account, error) {
	acc, err := s.store.GetAccount(ctx, strings.ToLower(localpart))
	if errors.Is(err, store.ErrNotFound) {
		// Spend the same time as a real check so account existence does
		// not leak through timing.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return nil, ErrBadCredentials
	} else if err != nil {
		return nil, err
	}
	if acc.PasswordHash == "" || bcrypt.CompareHashAndPassword([]byte(acc.PasswordHash), []byte(password)) != nil {
		return nil, ErrBadCredentials
	}
	return acc, nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.MinCost)

// NewSession creates a device (or replaces deviceID's token) and returns
// the new access token.
func (s *Service) NewSession(ctx context.Context, localpart string, deviceID id.DeviceID, displayName string) (string, id.DeviceID, error) {
	if deviceID == "" {
		deviceID = id.DeviceID(randomString(10))
	}
	token := "eimis_" + randomString(40)
	now := time.Now()
	err := s.store.CreateDevice(ctx, store.Device{
		Localpart: localpart, DeviceID: string(deviceID), DisplayName: displayName,
		TokenHash: HashToken(token), CreatedAt: now, LastSeen: now,
	})
	if err != nil {
		return "", "", err
	}
	return token, deviceID, nil
}

// Authenticate resolves an access token.
func (s *Service) Authenticate(ctx context.Context, token string) (Session, error) {
	if token == "" {
		return Session{}, ErrUnknownToken
	}
	h := sha256.Sum256([]byte(token))
	now := time.Now()
	s.mu.Lock()
	c, ok := s.cache[h]
	s.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.s, nil
	}
	if s.appservices != nil {
		// Never cached here: a removed appservice's token must stop
		// working at the appservices' next reload, not a TTL later.
		if sess, ok, err := s.appservices.Authenticate(ctx, token, ""); ok {
			return sess, err
		}
	}
	dev, err := s.store.DeviceByTokenHash(ctx, h[:])
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, ErrUnknownToken
	} else if err != nil {
		return Session{}, err
	}
	acc, err := s.store.GetAccount(ctx, dev.Localpart)
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, ErrUnknownToken
	} else if err != nil {
		return Session{}, err
	}
	sess := Session{UserID: s.UserID(dev.Localpart), DeviceID: id.DeviceID(dev.DeviceID), Admin: acc.Admin}
	s.mu.Lock()
	if len(s.cache) > 100_000 {
		clear(s.cache)
	}
	s.cache[h] = cachedSession{s: sess, expires: now.Add(tokenCacheTTL)}
	s.mu.Unlock()
	return sess, nil
}

// Logout deletes one device (and so its token).
func (s *Service) Logout(ctx context.Context, sess Session) error {
	lp, err := s.LocalpartOf(sess.UserID)
	if err != nil {
		return err
	}
	if err := s.store.DeleteDevice(ctx, lp, string(sess.DeviceID)); err != nil {
		return err
	}
	s.revoke(Revocation{UserID: sess.UserID, DeviceID: sess.DeviceID})
	return nil
}

// LogoutAll deletes every device of the user.
func (s *Service) LogoutAll(ctx context.Context, sess Session) error {
	lp, err := s.LocalpartOf(sess.UserID)
	if err != nil {
		return err
	}
	if err := s.store.DeleteAllDevices(ctx, lp); err != nil {
		return err
	}
	s.revoke(Revocation{UserID: sess.UserID})
	return nil
}

// RevokeUser deletes every device of a user without a session of theirs:
// the hub does it when the directory withdraws someone's authorisation.
func (s *Service) RevokeUser(ctx context.Context, u id.UserID) error {
	lp, err := s.LocalpartOf(u)
	if err != nil {
		return err
	}
	if err := s.store.DeleteAllDevices(ctx, lp); err != nil {
		return err
	}
	s.revoke(Revocation{UserID: u})
	return nil
}

// revoke evicts after the store change, so a concurrent Authenticate
// cannot re-cache a session that is being deleted.
func (s *Service) revoke(r Revocation) {
	s.Revoked(r)
	if s.announce != nil {
		s.announce(r)
	}
}

func (s *Service) forget(match func(Session) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.cache {
		if match(v.s) {
			delete(s.cache, k)
		}
	}
}

// HashToken is how tokens are stored.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomString(n int) string {
	// Rejection sampling keeps every character equally likely.
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		for _, c := range buf {
			if int(c) < 256-256%len(alphabet) && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// RandomString is exported for other packages needing opaque IDs.
func RandomString(n int) string { return randomString(n) }
