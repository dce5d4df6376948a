package ratelimit

import (
	"net/http"
	"net/netip"
	"time"
)

// Action is what a limit counts. Each has its own buckets and rate.
type Action uint8

// Actions. The per-user ones apply to Matrix clients; bridges and
// appservices are limited per operator (per bridge, per appservice
// registration) by the Operator ones instead, whatever user they act as.
const (
	// LoginAddress: login attempts per client address.
	LoginAddress Action = iota
	// LoginAccount: password login attempts per account named.
	LoginAccount
	// Registration: accounts created per client address.
	Registration
	// Message: events sent (messages, state, redactions) per account.
	Message
	// Join: rooms joined or created per account.
	Join
	// Invite: people invited per account (a room created with n invites
	// takes n).
	Invite
	// MediaUpload: uploads (and media IDs reserved) per account.
	MediaUpload
	// DirectorySearch: user directory searches per account.
	DirectorySearch
	// OperatorMessage: events sent by one bridge or appservice.
	OperatorMessage
	// OperatorMembership: joins, invites, rooms created, users registered
	// or logged in by one bridge or appservice.
	OperatorMembership
	// OperatorMedia: uploads by one bridge or appservice.
	OperatorMedia
	// OperatorSearch: directory searches by one bridge or appservice.
	OperatorSearch

	numActions
)

var actionNames = [numActions]string{
	"login_address", "login_account", "registration", "message", "join", "invite",
	"media_upload", "directory_search",
	"operator_message", "operator_membership", "operator_media", "operator_search",
}

func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return "unknown"
}

// Operator is the per-operator action standing for a per-user one: what
// a bridge or appservice doing a counts against.
func (a Action) Operator() Action {
	switch a {
	case Message:
		return OperatorMessage
	case MediaUpload:
		return OperatorMedia
	case DirectorySearch:
		return OperatorSearch
	case LoginAddress, LoginAccount, Registration, Join, Invite:
		return OperatorMembership
	}
	return a
}

// Config sets every limit. A missing or off rate limits nothing.
type Config struct {
	Rates map[Action]Rate
	// FailedLogins is the failed-password backoff per account (see
	// Backoff); MaxLockout caps its lockout.
	FailedLogins Rate
	MaxLockout   time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed (see ClientAddress).
	TrustedProxies []netip.Prefix
	// MaxKeys bounds each limiter's buckets (0: DefaultMaxKeys).
	MaxKeys int
	// Clock is the time (nil: the real one).
	Clock Clock
}

// Limits is every limit of one hub instance. A nil *Limits allows
// everything.
type Limits struct {
	clock   *clockRef
	by      [numActions]*Limiter
	failed  *Backoff
	proxies []netip.Prefix
}

// New builds the limits of cfg.
func New(cfg Config) *Limits {
	l := &Limits{clock: newClockRef(cfg.Clock), proxies: cfg.TrustedProxies}
	for a, r := range cfg.Rates {
		if a < numActions {
			l.by[a] = newLimiter(r, l.clock, cfg.MaxKeys)
		}
	}
	l.failed = newBackoff(cfg.FailedLogins, cfg.MaxLockout, l.clock, cfg.MaxKeys)
	return l
}

// SetClock changes the clock of every limit (tests).
func (l *Limits) SetClock(c Clock) { l.clock.set(c) }

// Limiter is the limiter of a (nil when a is not limited).
func (l *Limits) Limiter(a Action) *Limiter {
	if l == nil || a >= numActions {
		return nil
	}
	return l.by[a]
}

// Allow takes n tokens (at least 1) from key's bucket for a.
func (l *Limits) Allow(a Action, key string, n int) Decision {
	return l.Limiter(a).AllowN(key, n)
}

// LoginLocked reports whether account's password logins are locked out
// by earlier failures.
func (l *Limits) LoginLocked(account string) Decision {
	if l == nil {
		return allowed
	}
	return l.failed.Check(account)
}

// LoginFailed records a failed password login of account and returns the
// lockout it starts, if any.
func (l *Limits) LoginFailed(account string) time.Duration {
	if l == nil {
		return 0
	}
	return l.failed.Fail(account)
}

// LoginSucceeded forgets account's failed logins.
func (l *Limits) LoginSucceeded(account string) {
	if l != nil {
		l.failed.Reset(account)
	}
}

// ClientAddress is the address r came from, as a limit key (see
// ClientAddress).
func (l *Limits) ClientAddress(r *http.Request) string {
	if l == nil {
		return ClientAddress(r, nil)
	}
	return ClientAddress(r, l.proxies)
}
