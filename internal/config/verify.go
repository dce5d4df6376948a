package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxJetStreamReplicas is JetStream's own upper bound on stream replicas.
const maxJetStreamReplicas = 5

// minSharedSecretLen keeps the admin registration secret out of reach of
// online guessing; anyone holding it can mint admin accounts.
const minSharedSecretLen = 16

// Verify checks the final settings and returns nil or a Problems error
// listing every problem found. It expects Finish to have run, but leaves
// the values Finish would derive alone when they are still empty.
func (c Config) Verify() error {
	return c.problems().orNil()
}

func (c Config) problems() Problems {
	var p Problems
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if err := checkServerName(c.ServerName); err != nil {
		add("server_name: %q is not a valid Matrix server name: %v", c.ServerName, err)
	}
	if err := checkListen(c.Listen); err != nil {
		add("listen: %q is not a valid host:port: %v", c.Listen, err)
	}
	if c.PublicBaseURL != "" {
		if err := checkBaseURL(c.PublicBaseURL); err != nil {
			add("public_base_url: %q: %v", c.PublicBaseURL, err)
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		add("data_dir: must not be empty")
	}
	if kind, _ := c.DatabaseKind(); kind == "" {
		add("database: %q is not a recognised database URL (use postgres://…, postgresql://…, sqlite:///path, file:path, or leave empty for SQLite in data_dir)", redactURL(c.Database))
	}
	if err := checkNATS(c.NATS); err != nil {
		add("nats: %v", err)
	}
	p = append(p, c.natsProblems()...)
	if n := len(c.RegistrationSharedSecret); n > 0 && n < minSharedSecretLen {
		// The secret itself is never echoed: error output ends up in logs.
		add("registration_shared_secret: must be at least %d characters when set (got %d)", minSharedSecretLen, n)
	}
	if !slices.Contains(supportedRoomVersions, c.RoomVersion) {
		add("default_room_version: %q is not supported (want one of %s)", c.RoomVersion, strings.Join(supportedRoomVersions, ", "))
	}
	switch strings.ToLower(strings.TrimSpace(c.LogLevel)) {
	case "debug", "info", "warn", "error":
	default:
		add("log_level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch strings.ToLower(strings.TrimSpace(c.LogFormat)) {
	case "text", "json":
	default:
		add("log_format: %q is not one of text, json", c.LogFormat)
	}
	if c.RequestBodyTimeout < 0 {
		add("request_body_timeout: must not be negative (got %s; 0 disables it)", c.RequestBodyTimeout)
	}
	if c.SyncMaxTimeout < 0 {
		add("sync_max_timeout: must not be negative (got %s)", c.SyncMaxTimeout)
	}
	if c.NATSSyncInterval < 0 || c.NATSSyncInterval > time.Minute {
		add("nats_sync_interval: must be between 0 and 1m (got %s)", c.NATSSyncInterval)
	}
	if c.NATSStreamMaxAge < 0 {
		add("nats_stream_max_age: must not be negative (got %s; 0 keeps messages forever)", c.NATSStreamMaxAge)
	}
	switch {
	case c.NATSReplicas < 1 || c.NATSReplicas > maxJetStreamReplicas:
		add("nats_replicas: %d is out of range (want 1 to %d)", c.NATSReplicas, maxJetStreamReplicas)
	case c.NATSReplicas > 1 && c.EmbeddedNATS():
		// The embedded server is a single node, so JetStream would refuse
		// to create replicated streams at startup; say so now instead.
		add("nats_replicas: %d needs an external NATS cluster (set nats), the embedded server is a single node", c.NATSReplicas)
	}
	for _, code := range c.Professions() {
		if !allDigitsString(code) || len(code) > 3 {
			add("allowed_professions: %q is not a TRE_G15 profession code (digits, e.g. 10 for Médecin)", code)
		}
	}
	if c.TrustReloadInterval < time.Second {
		add("trust_reload_interval: must be at least 1s (got %s)", c.TrustReloadInterval)
	}
	if c.DirectoryFHIRURL != "" {
		if err := checkBaseURL(c.DirectoryFHIRURL); err != nil {
			add("directory_fhir_url: %q: %v", c.DirectoryFHIRURL, err)
		}
		if c.DirectoryFHIRInterval < time.Minute {
			add("directory_fhir_interval: must be at least 1m (got %s): the API is rate-limited", c.DirectoryFHIRInterval)
		}
	}
	if c.PSCIssuer != "" {
		if err := checkBaseURL(c.PSCIssuer); err != nil {
			add("psc_issuer: %q: %v", c.PSCIssuer, err)
		}
		if c.PSCClientID == "" {
			add("psc_client_id: required when psc_issuer is set")
		}
		if c.PSCClientSecret == "" {
			add("psc_client_secret: required when psc_issuer is set")
		}
	}
	if c.MediaMaxUploadBytes <= 0 {
		add("media_max_upload_bytes: must be positive (got %d)", c.MediaMaxUploadBytes)
	}
	if c.BridgeRequirePSCProof && c.PSCIssuer == "" {
		add("bridge_require_psc_proof: needs Pro Santé Connect (psc_issuer) to check the proofs")
	}
	if c.BridgeRequirePSCProof && c.BridgeBindWithoutConsentInsecure {
		add("bridge_bind_without_consent_insecure: contradicts bridge_require_psc_proof")
	}
	if c.BindingLinkCodeTTL < time.Minute || c.BindingLinkCodeTTL > time.Hour {
		add("binding_link_code_ttl: must be between 1m and 1h (got %s): a link code must be short-lived, and typed in time", c.BindingLinkCodeTTL)
	}
	if c.AuditRetention < 0 {
		add("audit_retention: must not be negative (got %s; 0 keeps entries forever)", c.AuditRetention)
	}
	p = append(p, c.rateLimitProblems()...)
	p = append(p, c.federationProblems()...)
	return p
}

func allDigitsString(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// checkServerName follows the server name grammar of the Matrix spec
// (appendix "Server Name"): an IPv4 literal, a bracketed IPv6 literal or a
// DNS name of [A-Za-z0-9.-], optionally followed by :port. Empty labels
// are rejected too, because "example..org" or a trailing dot would make a
// second spelling of the same server and split user IDs.
func checkServerName(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	host, port, hasPort := s, "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("unclosed '[' in IPv6 literal")
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return fmt.Errorf("unexpected %q after IPv6 literal", rest)
			}
			port, hasPort = rest[1:], true
		}
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return fmt.Errorf("%q is not an IPv6 address", host)
		}
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port, hasPort = s[:i], s[i+1:], true
		}
		if strings.Contains(host, ":") {
			return fmt.Errorf("an IPv6 literal must be in brackets, like [::1]:8448")
		}
		if err := checkDNSName(host); err != nil {
			return err
		}
	}
	if hasPort {
		if err := checkPort(port, false); err != nil {
			return err
		}
	}
	return nil
}

func checkDNSName(h string) error {
	if h == "" {
		return fmt.Errorf("empty host name")
	}
	if len(h) > 255 {
		return fmt.Errorf("host name longer than 255 characters")
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("character %q not allowed in a host name", r)
		}
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" {
			return fmt.Errorf("empty label in host name")
		}
	}
	return nil
}

// checkPort wants digits only: service names like "http" would make the
// server name (which is compared as a string) ambiguous. Port 0 is only
// meaningful for listening, where it asks the kernel for a free port —
// handy in tests.
func checkPort(port string, allowZero bool) error {
	if port == "" || len(port) > 5 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	for _, r := range port {
		if r < '0' || r > '9' {
			return fmt.Errorf("port %q is not a number", port)
		}
	}
	n, _ := strconv.Atoi(port)
	if n > 65535 || (n == 0 && !allowZero) {
		return fmt.Errorf("port %d is out of range", n)
	}
	return nil
}

func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%w", unwrapAddrErr(err))
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			if err := checkDNSName(host); err != nil {
				return err
			}
		}
	}
	return checkPort(port, true)
}

// unwrapAddrErr drops net.AddrError's echo of the address, which the
// caller's message already quotes.
func unwrapAddrErr(err error) error {
	if ae, ok := err.(*net.AddrError); ok {
		return fmt.Errorf("%s", ae.Err)
	}
	return err
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("must start with http:// or https://")
	}
	if u.Host == "" {
		return fmt.Errorf("has no host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		// Clients append API paths to the base URL, which a query or
		// fragment would swallow.
		return fmt.Errorf("must not have a query or fragment")
	}
	return nil
}

// checkNATS accepts what the NATS client accepts for a server list: one or
// more comma-separated URLs. The scheme is required so that a typo such as
// "nats:/host" fails here rather than as a connection error at startup.
func checkNATS(s string) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for i, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if err != nil {
			// Neither the entry nor url.Error is echoed: either could
			// carry a password.
			return fmt.Errorf("entry %d is not a valid URL", i+1)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%q is not a nats://, tls://, ws:// or wss:// URL", redactURL(raw))
		}
		if u.Host == "" {
			return fmt.Errorf("%q has no host", redactURL(raw))
		}
	}
	return nil
}

// redactURL hides a password embedded in a URL, since problems are printed
// to the terminal and to logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return "(unparsable URL with credentials, not shown)"
		}
		return s
	}
	if u.User == nil {
		return s
	}
	if _, has := u.User.Password(); !has {
		return s
	}
	return u.Redacted()
}
