package config

import (
	"fmt"
	"time"

	"github.com/eimis-hub/eimis/internal/ratelimit"
)

// rateSettings ties each rc_* setting to the limit it sets.
func (c *Config) rateSettings() []struct {
	key    string
	value  *string
	action ratelimit.Action
} {
	type rs = struct {
		key    string
		value  *string
		action ratelimit.Action
	}
	return []rs{
		{"rc_login_address", &c.RCLoginAddress, ratelimit.LoginAddress},
		{"rc_login_account", &c.RCLoginAccount, ratelimit.LoginAccount},
		{"rc_registration", &c.RCRegistration, ratelimit.Registration},
		{"rc_message", &c.RCMessage, ratelimit.Message},
		{"rc_joins", &c.RCJoins, ratelimit.Join},
		{"rc_invites", &c.RCInvites, ratelimit.Invite},
		{"rc_media_upload", &c.RCMediaUpload, ratelimit.MediaUpload},
		{"rc_user_directory", &c.RCUserDirectory, ratelimit.DirectorySearch},
		{"rc_operator_message", &c.RCOperatorMessage, ratelimit.OperatorMessage},
		{"rc_operator_membership", &c.RCOperatorMembership, ratelimit.OperatorMembership},
		{"rc_operator_media", &c.RCOperatorMedia, ratelimit.OperatorMedia},
		{"rc_operator_search", &c.RCOperatorSearch, ratelimit.OperatorSearch},
	}
}

// Limits returns the rate limits the settings describe (none when
// rate_limits is false). Verify has reported any unreadable value; one
// read here anyway is an error.
func (c Config) Limits() (ratelimit.Config, error) {
	proxies, err := ratelimit.ParseProxies(c.TrustedProxies)
	if err != nil {
		return ratelimit.Config{}, fmt.Errorf("trusted_proxies: %w", err)
	}
	out := ratelimit.Config{Rates: map[ratelimit.Action]ratelimit.Rate{}, TrustedProxies: proxies}
	if !c.RateLimits {
		return out, nil
	}
	for _, s := range c.rateSettings() {
		r, err := ratelimit.ParseRate(*s.value)
		if err != nil {
			return ratelimit.Config{}, fmt.Errorf("%s: %w", s.key, err)
		}
		out.Rates[s.action] = r
	}
	if out.FailedLogins, err = ratelimit.ParseRate(c.RCLoginFailed); err != nil {
		return ratelimit.Config{}, fmt.Errorf("rc_login_failed: %w", err)
	}
	out.MaxLockout = c.RCLoginFailedMaxLockout
	return out, nil
}

func (c Config) rateLimitProblems() Problems {
	var p Problems
	// Checked even when rate_limits is off, so turning them back on never
	// meets a value that was wrong all along.
	for _, s := range c.rateSettings() {
		if _, err := ratelimit.ParseRate(*s.value); err != nil {
			p = append(p, fmt.Sprintf("%s: %v", s.key, err))
		}
	}
	if _, err := ratelimit.ParseRate(c.RCLoginFailed); err != nil {
		p = append(p, fmt.Sprintf("rc_login_failed: %v", err))
	}
	if c.RCLoginFailedMaxLockout < 0 || c.RCLoginFailedMaxLockout > 24*time.Hour {
		p = append(p, fmt.Sprintf("rc_login_failed_max_lockout: must be between 0 and 24h (got %s)", c.RCLoginFailedMaxLockout))
	}
	if _, err := ratelimit.ParseProxies(c.TrustedProxies); err != nil {
		p = append(p, fmt.Sprintf("trusted_proxies: %q: %v (want addresses or CIDR prefixes, comma-separated)", c.TrustedProxies, err))
	}
	return p
}
