package config

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// setting ties one Config field to its three external names. Keeping them
// in one table is what guarantees that the file, the environment and the
// flags can all set exactly the same things.
type setting struct {
	key   string // YAML key
	env   string // environment variable
	flag  string // command-line flag, without dashes
	usage string
	field func(*Config) any // pointer to the field: *string, *bool, *int or *time.Duration
}

var settings = []setting{
	{"server_name", "EIMIS_SERVER_NAME", "server-name",
		"server name: the domain in user IDs and room aliases; changing it later orphans local data",
		func(c *Config) any { return &c.ServerName }},
	{"listen", "EIMIS_LISTEN", "listen",
		"host:port for the client HTTP API (federation has its own listener: federation_listen)",
		func(c *Config) any { return &c.Listen }},
	{"public_base_url", "EIMIS_PUBLIC_BASE_URL", "public-base-url",
		"URL clients use to reach the hub, advertised in .well-known (default http://<listen>)",
		func(c *Config) any { return &c.PublicBaseURL }},
	{"data_dir", "EIMIS_DATA_DIR", "data-dir",
		"directory for the default SQLite database, embedded NATS store and signing key",
		func(c *Config) any { return &c.DataDir }},
	{"database", "EIMIS_DATABASE", "database",
		"database URL: postgres://…, sqlite:///path or file:path (default SQLite at <data_dir>/eimis.db)",
		func(c *Config) any { return &c.Database }},
	{"nats", "EIMIS_NATS", "nats",
		"external NATS URL(s), comma-separated (default: embedded server storing in <data_dir>/nats)",
		func(c *Config) any { return &c.NATS }},
	{"signing_key_path", "EIMIS_SIGNING_KEY_PATH", "signing-key-path",
		"Synapse-format ed25519 signing key file, created if missing (default <data_dir>/signing.key)",
		func(c *Config) any { return &c.SigningKeyPath }},
	{"registration_shared_secret", "EIMIS_REGISTRATION_SHARED_SECRET", "registration-shared-secret",
		"secret for admin registration, at least 16 characters, empty disables it; prefer the file or env, flags show in ps",
		func(c *Config) any { return &c.RegistrationSharedSecret }},
	{"enable_registration", "EIMIS_ENABLE_REGISTRATION", "enable-registration",
		"allow anyone to create an account",
		func(c *Config) any { return &c.EnableRegistration }},
	{"default_room_version", "EIMIS_DEFAULT_ROOM_VERSION", "default-room-version",
		"room version for new rooms: 10, 11 or 12",
		func(c *Config) any { return &c.RoomVersion }},
	{"log_level", "EIMIS_LOG_LEVEL", "log-level",
		"log level: debug, info, warn or error",
		func(c *Config) any { return &c.LogLevel }},
	{"log_format", "EIMIS_LOG_FORMAT", "log-format",
		"log format: text or json",
		func(c *Config) any { return &c.LogFormat }},
	{"sync_max_timeout", "EIMIS_SYNC_MAX_TIMEOUT", "sync-max-timeout",
		"longest a client's /sync may wait for new data",
		func(c *Config) any { return &c.SyncMaxTimeout }},
	{"nats_stream_max_age", "EIMIS_NATS_STREAM_MAX_AGE", "nats-stream-max-age",
		"how long JetStream keeps messages, 0 for forever",
		func(c *Config) any { return &c.NATSStreamMaxAge }},
	{"nats_sync_interval", "EIMIS_NATS_SYNC_INTERVAL", "nats-sync-interval",
		"embedded NATS: how often JetStream fsyncs; 0 fsyncs every write (outbox rows are kept until a sync has surely passed, so nothing acknowledged is lost either way)",
		func(c *Config) any { return &c.NATSSyncInterval }},
	{"nats_replicas", "EIMIS_NATS_REPLICAS", "nats-replicas",
		"JetStream replicas: 1 for one node, 3 for a production cluster",
		func(c *Config) any { return &c.NATSReplicas }},
	{"allowed_professions", "EIMIS_ALLOWED_PROFESSIONS", "allowed-professions",
		"TRE_G15 profession codes allowed to take part, comma-separated (default: every profession of the directory, as CSP R1110-2 allows)",
		func(c *Config) any { return &c.AllowedProfessions }},
	{"trust_reload_interval", "EIMIS_TRUST_RELOAD_INTERVAL", "trust-reload-interval",
		"how often the hub checks the stored directory, service accounts and operators for changes made elsewhere (an import, another instance)",
		func(c *Config) any { return &c.TrustReloadInterval }},
	{"directory_fhir_url", "EIMIS_DIRECTORY_FHIR_URL", "directory-fhir-url",
		"Annuaire Santé FHIR API base URL (e.g. https://gateway.api.esante.gouv.fr/fhir/v2); empty disables the periodic sync",
		func(c *Config) any { return &c.DirectoryFHIRURL }},
	{"directory_fhir_api_key", "EIMIS_DIRECTORY_FHIR_API_KEY", "directory-fhir-api-key",
		"ESANTE-API-KEY for the FHIR API; prefer the file or env, flags show in ps",
		func(c *Config) any { return &c.DirectoryFHIRAPIKey }},
	{"directory_fhir_interval", "EIMIS_DIRECTORY_FHIR_INTERVAL", "directory-fhir-interval",
		"how often serve runs an incremental FHIR sync",
		func(c *Config) any { return &c.DirectoryFHIRInterval }},
	{"directory_fhir_full_interval", "EIMIS_DIRECTORY_FHIR_FULL_INTERVAL", "directory-fhir-full-interval",
		"how often serve reads the whole FHIR directory instead of the changes (deletions are only seen that way); 0 never",
		func(c *Config) any { return &c.DirectoryFHIRFullInterval }},
	{"psc_issuer", "EIMIS_PSC_ISSUER", "psc-issuer",
		"Pro Santé Connect issuer URL (e.g. https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet); empty disables SSO login",
		func(c *Config) any { return &c.PSCIssuer }},
	{"psc_client_id", "EIMIS_PSC_CLIENT_ID", "psc-client-id",
		"OpenID Connect client ID registered with Pro Santé Connect",
		func(c *Config) any { return &c.PSCClientID }},
	{"psc_client_secret", "EIMIS_PSC_CLIENT_SECRET", "psc-client-secret",
		"OpenID Connect client secret; prefer the file or env, flags show in ps",
		func(c *Config) any { return &c.PSCClientSecret }},
	{"psc_acr_values", "EIMIS_PSC_ACR_VALUES", "psc-acr-values",
		"acr_values requested from Pro Santé Connect and required back in the ID token",
		func(c *Config) any { return &c.PSCACRValues }},
	{"media_dir", "EIMIS_MEDIA_DIR", "media-dir",
		"directory for uploaded media (default <data_dir>/media); share it between instances",
		func(c *Config) any { return &c.MediaDir }},
	{"media_max_upload_bytes", "EIMIS_MEDIA_MAX_UPLOAD_BYTES", "media-max-upload-bytes",
		"largest media upload in bytes (M_TOO_LARGE above)",
		func(c *Config) any { return &c.MediaMaxUploadBytes }},
	{"bridge_require_psc_proof", "EIMIS_BRIDGE_REQUIRE_PSC_PROOF", "bridge-require-psc-proof",
		"bridges must prove each bind with the practitioner's Pro Santé Connect access token, link codes are refused (needs psc_issuer)",
		func(c *Config) any { return &c.BridgeRequirePSCProof }},
	{"bridge_bind_without_consent_insecure", "EIMIS_BRIDGE_BIND_WITHOUT_CONSENT_INSECURE", "bridge-bind-without-consent-insecure",
		"INSECURE, for demos and tests only: bridges may bind (act for) any active practitioner without proof of their consent",
		func(c *Config) any { return &c.BridgeBindWithoutConsentInsecure }},
	{"binding_link_code_ttl", "EIMIS_BINDING_LINK_CODE_TTL", "binding-link-code-ttl",
		"how long a link code, the practitioner's consent to an app's binding, stays usable",
		func(c *Config) any { return &c.BindingLinkCodeTTL }},
	{"audit_retention", "EIMIS_AUDIT_RETENTION", "audit-retention",
		"how long audit entries are kept before the purge (the chain stays verifiable); 0 keeps them forever",
		func(c *Config) any { return &c.AuditRetention }},
	{"profile_requires_auth", "EIMIS_PROFILE_REQUIRES_AUTH", "profile-requires-auth",
		"hide who has an account from unauthenticated callers: GET /profile needs an access token and /register/available answers alike for every valid username",
		func(c *Config) any { return &c.ProfileRequiresAuth }},
	{"request_body_timeout", "EIMIS_REQUEST_BODY_TIMEOUT", "request-body-timeout",
		"longest a client may take to send a request body, per 64 KiB (a slower client is cut off); 0 disables",
		func(c *Config) any { return &c.RequestBodyTimeout }},

	// Rate limits: per hub instance (docs/operator-guide.md).
	{"rate_limits", "EIMIS_RATE_LIMITS", "rate-limits",
		"apply the rc_* rate limits; false turns every one off (benchmarks only, never in production)",
		func(c *Config) any { return &c.RateLimits }},
	{"rc_login_address", "EIMIS_RC_LOGIN_ADDRESS", "rc-login-address",
		"login attempts per client address: \"<count>/<unit> burst <n>\" (unit s, min, h, d) or off",
		func(c *Config) any { return &c.RCLoginAddress }},
	{"rc_login_account", "EIMIS_RC_LOGIN_ACCOUNT", "rc-login-account",
		"password login attempts per account",
		func(c *Config) any { return &c.RCLoginAccount }},
	{"rc_login_failed", "EIMIS_RC_LOGIN_FAILED", "rc-login-failed",
		"wrong passwords per account: after burst n in a row, password logins are locked for 1/rate, doubling with each further failure",
		func(c *Config) any { return &c.RCLoginFailed }},
	{"rc_login_failed_max_lockout", "EIMIS_RC_LOGIN_FAILED_MAX_LOCKOUT", "rc-login-failed-max-lockout",
		"longest lockout after wrong passwords",
		func(c *Config) any { return &c.RCLoginFailedMaxLockout }},
	{"rc_registration", "EIMIS_RC_REGISTRATION", "rc-registration",
		"accounts registered per client address (open registration)",
		func(c *Config) any { return &c.RCRegistration }},
	{"rc_message", "EIMIS_RC_MESSAGE", "rc-message",
		"events sent per account (messages, state, redactions)",
		func(c *Config) any { return &c.RCMessage }},
	{"rc_joins", "EIMIS_RC_JOINS", "rc-joins",
		"rooms joined or created per account",
		func(c *Config) any { return &c.RCJoins }},
	{"rc_invites", "EIMIS_RC_INVITES", "rc-invites",
		"people invited per account (createRoom's invites included)",
		func(c *Config) any { return &c.RCInvites }},
	{"rc_media_upload", "EIMIS_RC_MEDIA_UPLOAD", "rc-media-upload",
		"media uploads per account",
		func(c *Config) any { return &c.RCMediaUpload }},
	{"rc_user_directory", "EIMIS_RC_USER_DIRECTORY", "rc-user-directory",
		"user directory searches per account",
		func(c *Config) any { return &c.RCUserDirectory }},
	{"rc_operator_message", "EIMIS_RC_OPERATOR_MESSAGE", "rc-operator-message",
		"events sent per bridge or appservice, whichever users it acts for",
		func(c *Config) any { return &c.RCOperatorMessage }},
	{"rc_operator_membership", "EIMIS_RC_OPERATOR_MEMBERSHIP", "rc-operator-membership",
		"joins, invites, rooms created, users registered or logged in per bridge or appservice",
		func(c *Config) any { return &c.RCOperatorMembership }},
	{"rc_operator_media", "EIMIS_RC_OPERATOR_MEDIA", "rc-operator-media",
		"media uploads per bridge or appservice",
		func(c *Config) any { return &c.RCOperatorMedia }},
	{"rc_operator_search", "EIMIS_RC_OPERATOR_SEARCH", "rc-operator-search",
		"directory searches per bridge or appservice",
		func(c *Config) any { return &c.RCOperatorSearch }},
	{"trusted_proxies", "EIMIS_TRUSTED_PROXIES", "trusted-proxies",
		"reverse proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For names the client address for per-address limits; empty uses the peer address",
		func(c *Config) any { return &c.TrustedProxies }},
}

func settingBy(match func(setting) bool) (setting, bool) {
	for _, s := range settings {
		if match(s) {
			return s, true
		}
	}
	return setting{}, false
}

// Load builds the configuration from the defaults, the YAML file at path
// (skipped when path is "") and env, given in os.Environ form, then runs
// Finish and Verify. A missing or syntactically broken file is returned as
// a plain error; everything else — unknown keys, badly typed values, bad
// environment values and invalid settings — is collected into one
// Problems error.
func Load(path string, env []string) (Config, error) {
	c := Defaults()
	p, err := c.applyFile(path)
	if err != nil {
		return Config{}, err
	}
	p = append(p, c.applyEnv(env)...)
	return finish(c, p)
}

// LoadWithFlags is Load plus command-line flags, the highest layer. It
// registers the settings' flags on fs (BindFlags), plus --config unless fs
// already defines it, parses args, and reads the file named by --config or
// else EIMIS_CONFIG. Only flags given on the command line override the
// lower layers, so a flag's default never masks a value from the file or
// environment. Errors from fs.Parse, including flag.ErrHelp, are returned
// as they are; fs.Args() holds the remaining arguments afterwards. fs must
// not already hold the settings' flags (flag panics on redefinition).
func LoadWithFlags(args []string, fs *flag.FlagSet, env []string) (Config, error) {
	if fs.Lookup("config") == nil {
		fs.String("config", "", "YAML config file, optional (env: "+EnvConfigFile+")")
	}
	// The flags write into their own Config so that parsing cannot clobber
	// file or environment values; only the visited ones are copied over.
	fromFlags := Defaults()
	fromFlags.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}

	path := lookupEnv(env, EnvConfigFile)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[canonicalFlag(f.Name)] = true })
	if set["config"] {
		path = fs.Lookup("config").Value.String()
	}

	c := Defaults()
	p, err := c.applyFile(path)
	if err != nil {
		return Config{}, err
	}
	p = append(p, c.applyEnv(env)...)
	for _, s := range settings {
		if set[s.flag] {
			dst := reflect.ValueOf(s.field(&c)).Elem()
			dst.Set(reflect.ValueOf(s.field(&fromFlags)).Elem())
		}
	}
	return finish(c, p)
}

func finish(c Config, p Problems) (Config, error) {
	c.Finish()
	p = append(p, c.problems()...)
	if len(p) > 0 {
		return Config{}, p
	}
	return c, nil
}

// BindFlags registers one flag per setting, writing into c and using c's
// current values as the flag defaults. The usage text names the YAML key
// and environment variable so --help documents all three spellings.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	for _, s := range settings {
		usage := fmt.Sprintf("%s (yaml: %s, env: %s)", s.usage, s.key, s.env)
		switch p := s.field(c).(type) {
		case *string:
			fs.StringVar(p, s.flag, *p, usage)
		case *bool:
			fs.BoolVar(p, s.flag, *p, usage)
		case *int:
			fs.IntVar(p, s.flag, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, s.flag, *p, usage)
		default:
			panic(fmt.Sprintf("config: setting %s has unsupported type %T", s.key, p))
		}
	}
	c.bindAliases(fs)
}

// applyFile layers the YAML file at path onto c. The file is walked as a
// node tree rather than decoded into the struct so that every key can be
// checked and reported with its line, instead of yaml.v3 stopping at or
// lumping together the failures.
func (c *Config) applyFile(path string) (Problems, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // an empty file means "all defaults"
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return Problems{fmt.Sprintf("%s:%d: expected a mapping of settings (key: value), got %s", path, root.Line, describeKind(root))}, nil
	}

	var p Problems
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		where := fmt.Sprintf("%s:%d", path, k.Line)
		if k.Kind != yaml.ScalarNode {
			p = append(p, fmt.Sprintf("%s: setting names must be plain words, got %s", where, describeKind(k)))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p = append(p, fmt.Sprintf("%s: %s is already set on line %d", where, k.Value, first))
			continue
		}
		seen[k.Value] = k.Line
		s, ok := settingBy(func(s setting) bool { return s.key == k.Value })
		if !ok {
			p = append(p, fmt.Sprintf("%s: %s", where, unknownKey(k.Value)))
			continue
		}
		if err := decodeNode(v, s.field(c)); err != nil {
			p = append(p, fmt.Sprintf("%s: %s: %v", where, s.key, err))
		}
	}
	return p, nil
}

func unknownKey(key string) string {
	if key == "max_event_bytes" {
		return fmt.Sprintf("max_event_bytes cannot be configured: the Matrix spec fixes it at %d", MaxEventBytes)
	}
	best, bestDist := "", 3 // suggest only close typos
	for _, s := range settings {
		if d := editDistance(key, s.key); d < bestDist {
			best, bestDist = s.key, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key %q (did you mean %s?)", key, best)
	}
	return fmt.Sprintf("unknown key %q", key)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decodeNode sets *ptr from a YAML value. YAML typing is tried first (so
// yes/no booleans and the like work), then the environment-variable
// parser, so that a quoted "true" or "30" is not rejected on a
// technicality.
func decodeNode(v *yaml.Node, ptr any) error {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
		// "key:" with no value keeps the lower layer's value, which is
		// how people disable a line without deleting it.
		return nil
	}
	if v.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected %s, got %s", describeType(ptr), describeKind(v))
	}
	// yaml.v3 truncates 1.5 into an int without complaint.
	if _, isInt := ptr.(*int); !isInt || v.ShortTag() != "!!float" {
		if err := v.Decode(ptr); err == nil {
			return nil
		}
	}
	return setString(ptr, v.Value)
}

// applyEnv layers the EIMIS_* variables onto c.
func (c *Config) applyEnv(env []string) Problems {
	var p Problems
	for _, s := range settings {
		v := lookupEnv(env, s.env)
		if v == "" {
			// Empty counts as unset: compose files and CI systems export
			// declared-but-blank variables, which should not wipe out a
			// value from the file.
			continue
		}
		if err := setString(s.field(c), v); err != nil {
			p = append(p, fmt.Sprintf("%s: %v", s.env, err))
		}
	}
	return p
}

// lookupEnv returns the first KEY=value entry, matching what os.Getenv
// sees when a process is started with duplicate variables.
func lookupEnv(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// setString parses s into *ptr. Its errors never include s for string
// fields (they cannot fail), so secrets are not echoed.
func setString(ptr any, s string) error {
	switch p := ptr.(type) {
	case *string:
		*p = s
	case *bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("expected %s, got %q", describeType(ptr), s)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("expected %s, got %q", describeType(ptr), s)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("expected %s, got %q", describeType(ptr), s)
		}
		*p = d
	default:
		return fmt.Errorf("unsupported setting type %T", ptr)
	}
	return nil
}

func describeType(ptr any) string {
	switch ptr.(type) {
	case *bool:
		return "true or false"
	case *int:
		return "a whole number"
	case *time.Duration:
		return "a duration such as 30s, 5m or 168h"
	}
	return "a string"
}

func describeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}
