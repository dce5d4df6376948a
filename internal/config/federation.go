package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/eimis-hub/eimis/federation/trustlist"
)

// Federation is the Server-Server API's settings (docs/federation.md).
// Federation is off unless FederationListen is set.
type Federation struct {
	// FederationListen is the host:port of the HTTPS federation listener
	// (the Server-Server API and the key server); "" turns federation off.
	FederationListen string `yaml:"federation_listen"`
	// FederationTLSCert and FederationTLSKey are the listener's PEM
	// certificate and key; when both are empty a self-signed pair is
	// created in <data_dir> (development only: peers must skip
	// verification or trust it).
	FederationTLSCert string `yaml:"federation_tls_cert"`
	FederationTLSKey  string `yaml:"federation_tls_key"`
	// FederationList is a signed federation list (JWS) on disk, re-read
	// every trust_reload_interval.
	FederationList string `yaml:"federation_list"`
	// FederationListURL is fetched every trust_reload_interval.
	FederationListURL string `yaml:"federation_list_url"`
	// FederationAuthorityKey is the trust space authority's public key:
	// inline ("ed25519:<base64>" or a PEM block) or a file holding it.
	FederationAuthorityKey string `yaml:"federation_authority_key"`
	// FederationListGrace is how long the last valid list stays in force
	// past its expiry when no newer one can be had.
	FederationListGrace time.Duration `yaml:"federation_list_grace"`
	// FederationCABundle is a PEM file of roots trusted, beside the
	// system's, for outbound federation connections.
	FederationCABundle string `yaml:"federation_ca_bundle"`
	// FederationInsecureSkipVerify accepts any certificate from peers.
	// For test peers on loopback only; logged loudly at start.
	FederationInsecureSkipVerify bool `yaml:"federation_insecure_skip_verify"`
}

func federationDefaults() Federation {
	// A day covers an authority's publication failing over a weekend
	// night without leaving a revoked server in for long.
	return Federation{FederationListGrace: 24 * time.Hour}
}

// FederationEnabled reports whether the hub serves and speaks the
// Server-Server API.
func (c Config) FederationEnabled() bool { return strings.TrimSpace(c.FederationListen) != "" }

// FederationTLSFiles returns the listener's certificate and key files,
// and whether they are the generated self-signed pair in the data dir.
func (c Config) FederationTLSFiles() (cert, key string, selfSigned bool) {
	if c.FederationTLSCert != "" || c.FederationTLSKey != "" {
		return c.FederationTLSCert, c.FederationTLSKey, false
	}
	return filepath.Join(c.DataDir, "federation-tls.crt"), filepath.Join(c.DataDir, "federation-tls.key"), true
}

// FederationListCache is where the last valid list fetched from the URL
// is kept, so a restart while the URL is down still has it.
func (c Config) FederationListCache() string {
	return filepath.Join(c.DataDir, "federation-list.jws")
}

func init() {
	settings = append(settings,
		setting{"federation_listen", "EIMIS_FEDERATION_LISTEN", "federation-listen",
			"host:port of the HTTPS federation listener (Server-Server API and key server); empty turns federation off",
			func(c *Config) any { return &c.FederationListen }},
		setting{"federation_tls_cert", "EIMIS_FEDERATION_TLS_CERT", "federation-tls-cert",
			"PEM certificate of the federation listener (default: a self-signed one created in <data_dir>, for development)",
			func(c *Config) any { return &c.FederationTLSCert }},
		setting{"federation_tls_key", "EIMIS_FEDERATION_TLS_KEY", "federation-tls-key",
			"PEM private key of the federation listener",
			func(c *Config) any { return &c.FederationTLSKey }},
		setting{"federation_list", "EIMIS_FEDERATION_LIST", "federation-list",
			"signed federation list (JWS) file, re-read every trust_reload_interval",
			func(c *Config) any { return &c.FederationList }},
		setting{"federation_list_url", "EIMIS_FEDERATION_LIST_URL", "federation-list-url",
			"URL of the signed federation list, fetched every trust_reload_interval",
			func(c *Config) any { return &c.FederationListURL }},
		setting{"federation_authority_key", "EIMIS_FEDERATION_AUTHORITY_KEY", "federation-authority-key",
			"the trust space authority's public key, inline (ed25519:<base64> or PEM) or a file holding it",
			func(c *Config) any { return &c.FederationAuthorityKey }},
		setting{"federation_list_grace", "EIMIS_FEDERATION_LIST_GRACE", "federation-list-grace",
			"how long the last valid federation list stays in force past its expiry; after that every federation request is refused",
			func(c *Config) any { return &c.FederationListGrace }},
		setting{"federation_ca_bundle", "EIMIS_FEDERATION_CA_BUNDLE", "federation-ca-bundle",
			"PEM file of extra root certificates trusted for outbound federation connections",
			func(c *Config) any { return &c.FederationCABundle }},
		setting{"federation_insecure_skip_verify", "EIMIS_FEDERATION_INSECURE_SKIP_VERIFY", "federation-insecure-skip-verify",
			"INSECURE, test peers only: accept any TLS certificate from federation peers",
			func(c *Config) any { return &c.FederationInsecureSkipVerify }},
	)
}

func (c Config) federationProblems() Problems {
	var p Problems
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if c.FederationListGrace < 0 {
		add("federation_list_grace: must not be negative (got %s)", c.FederationListGrace)
	}
	if (c.FederationTLSCert == "") != (c.FederationTLSKey == "") {
		add("federation_tls_cert and federation_tls_key: give both or neither")
	}
	if c.FederationListURL != "" {
		if err := checkListURL(c.FederationListURL); err != nil {
			add("federation_list_url: %q: %v", redactURL(c.FederationListURL), err)
		}
	}
	if c.FederationAuthorityKey != "" {
		if _, err := trustlist.ParsePublicKey(c.FederationAuthorityKey); err != nil {
			add("federation_authority_key: %v", err)
		}
	}
	if !c.FederationEnabled() {
		return p
	}
	if err := checkListen(c.FederationListen); err != nil {
		add("federation_listen: %q is not a valid host:port: %v", c.FederationListen, err)
	} else if c.FederationListen == c.Listen {
		add("federation_listen: must differ from listen (the client API is served there)")
	}
	if c.FederationList == "" && c.FederationListURL == "" {
		add("federation_listen is set but neither federation_list nor federation_list_url is: the hub federates only with a signed list")
	}
	if c.FederationAuthorityKey == "" {
		add("federation_listen is set but federation_authority_key is not: the list cannot be verified")
	}
	return p
}

// checkListURL wants https, or http to a loopback address (tests, a
// local mirror): the list is signed, but a plain-text fetch across a
// network would let anyone hold back updates unnoticed.
func checkListURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("not an absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
		return fmt.Errorf("http is only allowed to a loopback address; use https")
	}
	return fmt.Errorf("scheme %q: want https", u.Scheme)
}
