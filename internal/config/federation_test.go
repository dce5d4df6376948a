package config

import (
	"strings"
	"testing"
)

func TestFederationVerify(t *testing.T) {
	const key = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the single expected problem; "" for valid
	}{
		{"off by default", func(*Config) {}, ""},
		{"on", func(c *Config) {
			c.FederationListen, c.FederationList, c.FederationAuthorityKey = "127.0.0.1:8448", "/etc/eimis/list.jws", key
		}, ""},
		{"no list", func(c *Config) { c.FederationListen, c.FederationAuthorityKey = "127.0.0.1:8448", key }, "federation_list"},
		{"no key", func(c *Config) {
			c.FederationListen, c.FederationListURL = "127.0.0.1:8448", "https://authority.test/list.jws"
		}, "federation_authority_key"},
		{"bad key", func(c *Config) { c.FederationAuthorityKey = "ed25519:nope" }, "federation_authority_key"},
		{"bad listen", func(c *Config) {
			c.FederationListen, c.FederationList, c.FederationAuthorityKey = "nowhere", "/l.jws", key
		}, "federation_listen"},
		{"same as client listen", func(c *Config) {
			c.FederationListen, c.FederationList, c.FederationAuthorityKey = c.Listen, "/l.jws", key
		}, "differ"},
		{"cert without key", func(c *Config) { c.FederationTLSCert = "/etc/cert.pem" }, "both or neither"},
		{"plain http list", func(c *Config) { c.FederationListURL = "http://authority.test/list.jws" }, "https"},
		{"loopback http list", func(c *Config) { c.FederationListURL = "http://127.0.0.1:9000/list.jws" }, ""},
		{"negative grace", func(c *Config) { c.FederationListGrace = -1 }, "grace"},
	}
	for _, tc := range tests {
		c := Defaults()
		tc.modify(&c)
		c.Finish()
		err := c.Verify()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a problem about %q", tc.name, err, tc.want)
		}
	}
}

func TestFederationFlags(t *testing.T) {
	c, err := LoadWithFlags([]string{"--federation-listen", "127.0.0.1:8448", "--federation-list", "/l.jws",
		"--federation-authority-key", "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo",
		"--federation-insecure-skip-verify"}, newFlagSet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.FederationEnabled() || !c.FederationInsecureSkipVerify || c.FederationList != "/l.jws" {
		t.Fatalf("%+v", c.Federation)
	}
	if cert, key, self := c.FederationTLSFiles(); !self || !strings.HasSuffix(cert, "federation-tls.crt") || !strings.HasSuffix(key, "federation-tls.key") {
		t.Fatalf("self-signed files: %s %s %v", cert, key, self)
	}
}
