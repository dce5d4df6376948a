// Package config holds the hub's settings and the layering that produces
// them: built-in defaults < YAML file < EIMIS_* environment < command-line
// flags. The defaults are chosen so that `eimis-hub serve` works with no
// file at all (SQLite and an embedded NATS under ./data), which keeps a
// first run and the test suites free of setup.
//
// Loading never stops at the first bad setting: every problem found in the
// file, the environment and the final values is reported together as a
// Problems error, so an operator fixes a config in one round trip.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// MaxEventBytes is the largest PDU the Matrix specification allows (65536
// bytes of canonical JSON). It is a protocol constant, not a tunable: a
// hub accepting larger events would create rooms other servers reject.
const MaxEventBytes = 65536

// EnvConfigFile names the environment variable that points at the YAML
// file when --config is not given.
const EnvConfigFile = "EIMIS_CONFIG"

// Database kinds returned by DatabaseKind.
const (
	KindSQLite   = "sqlite"
	KindPostgres = "postgres"
)

// Room versions the hub can create. Older versions lack the
// authorization-rule fixes the hub relies on, so they are refused here
// rather than producing rooms the hub cannot handle correctly.
var supportedRoomVersions = []string{"10", "11", "12"}

// Config is the complete set of hub settings. The yaml tags document the
// file keys; see settings for the matching environment variables and flags.
type Config struct {
	// ServerName is the domain part of every local user ID, room alias and
	// event ID. Changing it after the first start orphans all local data.
	ServerName string `yaml:"server_name"`
	// Listen is the host:port the client HTTP API binds to (federation
	// has its own HTTPS listener, FederationListen).
	Listen string `yaml:"listen"`
	// PublicBaseURL is how clients reach the hub, advertised in
	// /.well-known/matrix/client. Finish derives it from Listen when empty.
	PublicBaseURL string `yaml:"public_base_url"`
	// DataDir holds everything the hub writes by default: the SQLite
	// database, the embedded NATS store and the signing key.
	DataDir string `yaml:"data_dir"`
	// Database selects the store: "" for SQLite at <data_dir>/eimis.db,
	// postgres:// or postgresql:// for PostgreSQL, sqlite:///path or
	// file:path for SQLite elsewhere. See DatabaseKind.
	Database string `yaml:"database"`
	// NATS is the URL (or comma-separated URLs) of an external NATS
	// cluster; "" runs an embedded server storing under <data_dir>/nats.
	NATS string `yaml:"nats"`
	// SigningKeyPath is the Synapse-format ed25519 key file. Finish sets
	// it to <data_dir>/signing.key when empty.
	SigningKeyPath string `yaml:"signing_key_path"`
	// RegistrationSharedSecret enables the Synapse-compatible admin
	// registration endpoint; "" disables it.
	RegistrationSharedSecret string `yaml:"registration_shared_secret"`
	// EnableRegistration allows anyone to create an account via
	// /register. Off by default because an open hub attracts spam.
	EnableRegistration bool `yaml:"enable_registration"`
	// RoomVersion is used for rooms created without an explicit version.
	RoomVersion string `yaml:"default_room_version"`
	// MaxEventBytes mirrors the MaxEventBytes constant so handlers that
	// only receive a Config need no second import; Finish pins it.
	MaxEventBytes int `yaml:"-"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `yaml:"log_format"`
	// SyncMaxTimeout caps the timeout a client may ask /sync to wait, so
	// a client cannot pin a connection (and its goroutine) for hours.
	SyncMaxTimeout time.Duration `yaml:"sync_max_timeout"`
	// NATSStreamMaxAge bounds how long JetStream keeps messages; 0 means
	// forever, which is only sensible with an external retention policy.
	NATSStreamMaxAge time.Duration `yaml:"nats_stream_max_age"`
	// NATSSyncInterval is the embedded JetStream's fsync interval (0 =
	// every write). The outbox keeps published rows for longer than this,
	// so a power loss re-publishes instead of losing.
	NATSSyncInterval time.Duration `yaml:"nats_sync_interval"`
	// NATSReplicas is the JetStream replication factor: 1 for a single
	// node, 3 for a production cluster.
	NATSReplicas int `yaml:"nats_replicas"`
	// AllowedProfessions narrows who may take part to these TRE_G15
	// profession codes (comma-separated); "" allows every profession the
	// directory lists.
	AllowedProfessions string `yaml:"allowed_professions"`
	// TrustReloadInterval is how often an instance looks for changes to the
	// directory, service accounts and operators made by another process.
	TrustReloadInterval time.Duration `yaml:"trust_reload_interval"`
	// DirectoryFHIRURL enables the periodic Annuaire Santé FHIR sync.
	DirectoryFHIRURL      string        `yaml:"directory_fhir_url"`
	DirectoryFHIRAPIKey   string        `yaml:"directory_fhir_api_key"`
	DirectoryFHIRInterval time.Duration `yaml:"directory_fhir_interval"`
	// DirectoryFHIRFullInterval forces a full FHIR read this often (0:
	// never), the only way deletions from the API are noticed.
	DirectoryFHIRFullInterval time.Duration `yaml:"directory_fhir_full_interval"`
	// PSCIssuer enables Pro Santé Connect login (m.login.sso).
	PSCIssuer       string `yaml:"psc_issuer"`
	PSCClientID     string `yaml:"psc_client_id"`
	PSCClientSecret string `yaml:"psc_client_secret"`
	PSCACRValues    string `yaml:"psc_acr_values"`
	// BridgeRequirePSCProof makes Pro Santé Connect the only proof of
	// consent a bridge may bind with: the practitioner's access token,
	// checked with the provider (link codes are then refused).
	BridgeRequirePSCProof bool `yaml:"bridge_require_psc_proof"`
	// BridgeBindWithoutConsentInsecure lets bridges bind practitioners
	// with no proof of their consent. For demos and tests only.
	BridgeBindWithoutConsentInsecure bool `yaml:"bridge_bind_without_consent_insecure"`
	// BindingLinkCodeTTL is how long a link code lives.
	BindingLinkCodeTTL time.Duration `yaml:"binding_link_code_ttl"`
	// AuditRetention is how long audit entries are kept (0: forever).
	AuditRetention time.Duration `yaml:"audit_retention"`
	// MediaDir holds uploaded media; Finish sets <data_dir>/media.
	MediaDir string `yaml:"media_dir"`
	// MediaMaxUploadBytes bounds one upload (M_TOO_LARGE above it).
	MediaMaxUploadBytes int `yaml:"media_max_upload_bytes"`
	// ProfileRequiresAuth keeps unauthenticated callers from learning who
	// has an account (Synapse's require_auth_for_profile_requests):
	// GET /profile needs an access token, and /register/available answers
	// the same for every valid username.
	ProfileRequiresAuth bool `yaml:"profile_requires_auth"`
	// RequestBodyTimeout is how long a client may take to send a request
	// body, per 64 KiB: a small body must arrive within it, a large upload
	// must keep that pace. 0 disables it.
	RequestBodyTimeout time.Duration `yaml:"request_body_timeout"`

	// Rate limits (see ratelimits.go and docs/operator-guide.md): each
	// rc_* value is "<count>/<unit> burst <n>" or "off". RateLimits false
	// turns them all off.
	RateLimits              bool          `yaml:"rate_limits"`
	RCLoginAddress          string        `yaml:"rc_login_address"`
	RCLoginAccount          string        `yaml:"rc_login_account"`
	RCLoginFailed           string        `yaml:"rc_login_failed"`
	RCLoginFailedMaxLockout time.Duration `yaml:"rc_login_failed_max_lockout"`
	RCRegistration          string        `yaml:"rc_registration"`
	RCMessage               string        `yaml:"rc_message"`
	RCJoins                 string        `yaml:"rc_joins"`
	RCInvites               string        `yaml:"rc_invites"`
	RCMediaUpload           string        `yaml:"rc_media_upload"`
	RCUserDirectory         string        `yaml:"rc_user_directory"`
	RCOperatorMessage       string        `yaml:"rc_operator_message"`
	RCOperatorMembership    string        `yaml:"rc_operator_membership"`
	RCOperatorMedia         string        `yaml:"rc_operator_media"`
	RCOperatorSearch        string        `yaml:"rc_operator_search"`
	// TrustedProxies are the reverse proxies (addresses or CIDR prefixes,
	// comma-separated) whose X-Forwarded-For gives the client address.
	TrustedProxies string `yaml:"trusted_proxies"`

	// NATSSecurity: credentials and TLS for an external NATS (nats.go).
	NATSSecurity
	Federation `yaml:",inline"` // federation.go
}

// Professions returns AllowedProfessions as a list.
func (c Config) Professions() []string {
	var out []string
	for _, p := range strings.Split(c.AllowedProfessions, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Defaults returns the built-in settings. Values derived from other
// settings (PublicBaseURL, SigningKeyPath) stay empty so that a later
// layer changing Listen or DataDir still moves them; Finish fills them.
func Defaults() Config {
	return Config{
		ServerName:       "localhost",
		Listen:           "127.0.0.1:8008",
		DataDir:          "./data",
		RoomVersion:      "11",
		MaxEventBytes:    MaxEventBytes,
		LogLevel:         "info",
		LogFormat:        "text",
		SyncMaxTimeout:   30 * time.Second,
		NATSStreamMaxAge: 168 * time.Hour,
		NATSSyncInterval: time.Second,
		NATSReplicas:     1,
		// A directory import elsewhere reaches every instance within this;
		// the check is one indexed read.
		TrustReloadInterval:       10 * time.Second,
		DirectoryFHIRInterval:     time.Hour,
		DirectoryFHIRFullInterval: 7 * 24 * time.Hour,
		PSCACRValues:              "eidas1",
		// Six months, the usual retention for access traces in French
		// hospital information systems.
		AuditRetention: 183 * 24 * time.Hour,
		// Scanned reports and photos of wounds fit; videos do not belong
		// in a care conversation's attachments.
		MediaMaxUploadBytes: 50 << 20,
		ProfileRequiresAuth: true,
		// A person's client sends a JSON body in milliseconds and an
		// upload at far more than 64 KiB in 30 s (about 2 KiB/s); a client
		// trickling slower holds a connection for nothing.
		RequestBodyTimeout: 30 * time.Second,
		// Rate limits a person never meets and a script does; the
		// reasons are in docs/operator-guide.md.
		RateLimits:              true,
		RCLoginAddress:          "30/min burst 30",
		RCLoginAccount:          "10/min burst 5",
		RCLoginFailed:           "1/min burst 5",
		RCLoginFailedMaxLockout: 15 * time.Minute,
		RCRegistration:          "10/min burst 3",
		RCMessage:               "3/s burst 50",
		RCJoins:                 "6/min burst 20",
		RCInvites:               "30/min burst 50",
		RCMediaUpload:           "1/s burst 30",
		RCUserDirectory:         "1/s burst 30",
		RCOperatorMessage:       "100/s burst 1000",
		RCOperatorMembership:    "20/s burst 500",
		RCOperatorMedia:         "10/s burst 200",
		RCOperatorSearch:        "20/s burst 200",
		// Long enough to open the vendor's app and type the code.
		BindingLinkCodeTTL: 10 * time.Minute,
		Federation:         federationDefaults(),
	}
}

// Finish fills the values derived from other settings. Call it once, after
// every layer has been applied: a derived value that is already set is
// treated as explicit and kept.
func (c *Config) Finish() {
	c.MaxEventBytes = MaxEventBytes
	c.LogLevel = strings.ToLower(strings.TrimSpace(c.LogLevel))
	c.LogFormat = strings.ToLower(strings.TrimSpace(c.LogFormat))
	if c.SigningKeyPath == "" && c.DataDir != "" {
		c.SigningKeyPath = filepath.Join(c.DataDir, "signing.key")
	}
	if c.PublicBaseURL == "" {
		c.PublicBaseURL = deriveBaseURL(c.Listen)
	}
	if c.MediaDir == "" && c.DataDir != "" {
		c.MediaDir = filepath.Join(c.DataDir, "media")
	}
	// A trailing slash would double up when handlers append paths.
	c.PublicBaseURL = strings.TrimRight(c.PublicBaseURL, "/")
}

// deriveBaseURL turns a listen address into a URL a local client can use.
// A wildcard bind address is not something a client can connect to, so it
// is replaced by localhost; deployments behind a proxy set
// public_base_url explicitly anyway. An unparsable listen address yields ""
// so Verify reports the listen problem once instead of also complaining
// about a URL the operator never wrote.
func deriveBaseURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// DatabaseKind says which store to open and with what DSN. For SQLite the
// DSN is a path or a file: URI, both of which database/sql SQLite drivers
// accept; for PostgreSQL it is the URL unchanged. An unrecognised value
// yields ("", "") — Verify reports it, so callers that verified first
// never see that.
func (c Config) DatabaseKind() (kind string, dsn string) {
	db := strings.TrimSpace(c.Database)
	lower := strings.ToLower(db)
	switch {
	case db == "":
		return KindSQLite, filepath.Join(c.DataDir, "eimis.db")
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return KindPostgres, db
	case strings.HasPrefix(lower, "sqlite://"):
		// sqlite:///abs/path has an empty authority, so stripping the
		// scheme and "//" leaves the absolute path; sqlite://rel.db
		// leaves a relative one.
		path := db[len("sqlite://"):]
		if path == "" {
			return "", ""
		}
		return KindSQLite, path
	case strings.HasPrefix(lower, "file:"):
		if len(db) == len("file:") {
			return "", ""
		}
		// Kept as a URI so SQLite still sees any ?mode=…&_pragma=… options.
		return KindSQLite, db
	}
	return "", ""
}

// NATSStoreDir is where the embedded NATS server keeps its JetStream data.
func (c Config) NATSStoreDir() string {
	return filepath.Join(c.DataDir, "nats")
}

// EmbeddedNATS reports whether the hub must run its own NATS server.
func (c Config) EmbeddedNATS() bool {
	return strings.TrimSpace(c.NATS) == ""
}

// SlogLevel converts LogLevel for log/slog; an unknown level (which Verify
// rejects) falls back to info so logging still works while reporting it.
func (c Config) SlogLevel() slog.Level {
	switch strings.ToLower(strings.TrimSpace(c.LogLevel)) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Problems is a list of configuration mistakes, one human-readable
// sentence each. It is an error so that Load can return every problem at
// once; use errors.As to get at the individual entries.
type Problems []string

func (p Problems) Error() string {
	switch len(p) {
	case 0:
		return "invalid configuration"
	case 1:
		return "invalid configuration: " + p[0]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problems):", len(p))
	for _, s := range p {
		b.WriteString("\n  - ")
		b.WriteString(s)
	}
	return b.String()
}

// orNil keeps the nil-interface contract: a nil Problems slice stored in an
// error interface would not compare equal to nil.
func (p Problems) orNil() error {
	if len(p) == 0 {
		return nil
	}
	return p
}
