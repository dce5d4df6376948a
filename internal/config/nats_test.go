package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNATSSecurityProblems(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" means valid
	}{
		{"embedded defaults", func(c *Config) {}, ""},
		{"external user/password with mutual TLS", func(c *Config) {
			c.NATS, c.NATSUser, c.NATSPassword, c.NATSCAFile, c.NATSCertFile, c.NATSKeyFile = "tls://n:4222", "u", "p", f, f, f
		}, ""},
		{"user without password", func(c *Config) { c.NATS, c.NATSUser = "nats://n:4222", "u" }, "set both or neither"},
		{"two credential kinds", func(c *Config) { c.NATS, c.NATSToken, c.NATSCredsFile = "nats://n:4222", "t", f }, "choose one of"},
		{"cert without key", func(c *Config) { c.NATS, c.NATSCertFile = "nats://n:4222", f }, "nats_cert_file and nats_key_file"},
		{"missing file", func(c *Config) { c.NATS, c.NATSCAFile = "nats://n:4222", f+".missing" }, "nats_ca_file"},
		{"credentials for the embedded server", func(c *Config) { c.NATSToken = "t" }, "only apply to an external NATS"},
		{"embedded loopback listener", func(c *Config) { c.NATSEmbeddedListen = "127.0.0.1:4222" }, ""},
		{"embedded listener on every interface", func(c *Config) { c.NATSEmbeddedListen = "0.0.0.0:4222" }, "loopback"},
		{"embedded listener with an external NATS", func(c *Config) { c.NATS, c.NATSEmbeddedListen = "nats://n:4222", "127.0.0.1:4222" }, "only applies to the embedded NATS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			tc.mod(&c)
			c.Finish()
			err := c.Verify()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Verify = %v, want a problem containing %q", err, tc.want)
			}
		})
	}
}

// TestFlagsFollowKeys keeps the three spellings of a setting predictable:
// the flag is the YAML key with dashes, the variable EIMIS_ and the key in
// capitals (checked in TestSettingsTable).
func TestFlagsFollowKeys(t *testing.T) {
	for _, s := range settings {
		if want := strings.ReplaceAll(s.key, "_", "-"); s.flag != want {
			t.Errorf("setting %s has flag --%s, want --%s (keep the old name in flagAliases)", s.key, s.flag, want)
		}
	}
}

func TestFlagAlias(t *testing.T) {
	for _, flagName := range []string{"signing-key", "signing-key-path"} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c, err := LoadWithFlags([]string{"--" + flagName, "/k/signing.key"}, fs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.SigningKeyPath != "/k/signing.key" {
			t.Fatalf("--%s set signing_key_path to %q", flagName, c.SigningKeyPath)
		}
	}
}
