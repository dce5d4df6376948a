package config

import (
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/ratelimit"
)

// setDefaultRateLimits copies the rate limit defaults into a config the
// other tests spell out field by field.
func setDefaultRateLimits(c *Config) {
	d := Defaults()
	c.RateLimits = d.RateLimits
	c.RCLoginFailed, c.RCLoginFailedMaxLockout = d.RCLoginFailed, d.RCLoginFailedMaxLockout
	c.TrustedProxies = d.TrustedProxies
	src := d.rateSettings()
	for i, s := range c.rateSettings() {
		*s.value = *src[i].value
	}
}

func TestDefaultRateLimits(t *testing.T) {
	rl, err := finished(Defaults()).Limits()
	if err != nil {
		t.Fatal(err)
	}
	for a := ratelimit.LoginAddress; a <= ratelimit.OperatorSearch; a++ {
		if rl.Rates[a].Off() {
			t.Errorf("%s is off by default", a)
		}
	}
	// Bridges and appservices carry many people's traffic: their limits
	// must be well above one person's.
	for _, a := range []ratelimit.Action{ratelimit.Message, ratelimit.MediaUpload, ratelimit.DirectorySearch, ratelimit.Join, ratelimit.Invite} {
		per, op := rl.Rates[a], rl.Rates[a.Operator()]
		if op.PerSecond < 10*per.PerSecond || op.Burst < per.Burst {
			t.Errorf("%s (%s) is not well above %s (%s)", a.Operator(), op, a, per)
		}
	}
	if rl.FailedLogins.Off() || rl.MaxLockout != 15*time.Minute {
		t.Errorf("failed logins %s max %s", rl.FailedLogins, rl.MaxLockout)
	}
}

func TestRateLimitSettings(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string // substring of the one problem; "" for valid
		// check the resulting limits
		check func(t *testing.T, rl ratelimit.Config)
	}{
		{name: "message from env", env: []string{"EIMIS_RC_MESSAGE=10/s burst 100"}, check: func(t *testing.T, rl ratelimit.Config) {
			if r := rl.Rates[ratelimit.Message]; r.PerSecond != 10 || r.Burst != 100 {
				t.Errorf("rc_message = %s", r)
			}
		}},
		{name: "one limit off", env: []string{"EIMIS_RC_JOINS=off"}, check: func(t *testing.T, rl ratelimit.Config) {
			if !rl.Rates[ratelimit.Join].Off() || rl.Rates[ratelimit.Message].Off() {
				t.Errorf("joins %s, message %s", rl.Rates[ratelimit.Join], rl.Rates[ratelimit.Message])
			}
		}},
		{name: "all off", env: []string{"EIMIS_RATE_LIMITS=false"}, check: func(t *testing.T, rl ratelimit.Config) {
			if len(rl.Rates) != 0 || !rl.FailedLogins.Off() {
				t.Errorf("limits left on: %+v", rl)
			}
		}},
		{name: "trusted proxies", env: []string{"EIMIS_TRUSTED_PROXIES=127.0.0.1, 10.0.0.0/8"}, check: func(t *testing.T, rl ratelimit.Config) {
			if len(rl.TrustedProxies) != 2 || rl.TrustedProxies[1].String() != "10.0.0.0/8" {
				t.Errorf("proxies %v", rl.TrustedProxies)
			}
		}},
		{name: "bad rate", env: []string{"EIMIS_RC_INVITES=lots"}, want: "rc_invites:"},
		{name: "bad failed-login rate", env: []string{"EIMIS_RC_LOGIN_FAILED=5 per minute"}, want: "rc_login_failed:"},
		{name: "bad rate even when off", env: []string{"EIMIS_RATE_LIMITS=false", "EIMIS_RC_MESSAGE=3/s"}, want: "rc_message:"},
		{name: "negative lockout", env: []string{"EIMIS_RC_LOGIN_FAILED_MAX_LOCKOUT=-1s"}, want: "rc_login_failed_max_lockout"},
		{name: "bad proxy", env: []string{"EIMIS_TRUSTED_PROXIES=proxy.internal"}, want: "trusted_proxies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load("", tt.env)
			if tt.want != "" {
				p, ok := err.(Problems)
				if !ok || len(p) != 1 || !strings.Contains(p[0], tt.want) {
					t.Fatalf("Load = %v, want one problem about %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rl, err := c.Limits()
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, rl)
		})
	}
}
