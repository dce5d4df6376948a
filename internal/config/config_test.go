package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func finished(c Config) Config {
	c.Finish()
	return c
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("eimis-hub serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("want a Problems error, got %T: %v", err, err)
	}
	return p
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "eimis.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The hub must start with nothing configured at all.
func TestDefaultsWorkWithoutConfiguration(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatalf("Load with nothing: %v", err)
	}
	want := Config{
		ServerName:       "localhost",
		Listen:           "127.0.0.1:8008",
		PublicBaseURL:    "http://127.0.0.1:8008",
		DataDir:          "./data",
		SigningKeyPath:   filepath.Join("data", "signing.key"),
		RoomVersion:      "11",
		MaxEventBytes:    65536,
		LogLevel:         "info",
		LogFormat:        "text",
		SyncMaxTimeout:   30 * time.Second,
		NATSStreamMaxAge: 168 * time.Hour,
		NATSSyncInterval: time.Second,
		NATSReplicas:     1,

		TrustReloadInterval:       10 * time.Second,
		DirectoryFHIRInterval:     time.Hour,
		DirectoryFHIRFullInterval: 7 * 24 * time.Hour,
		PSCACRValues:              "eidas1",
		AuditRetention:            183 * 24 * time.Hour,
		MediaDir:                  filepath.Join("data", "media"),
		MediaMaxUploadBytes:       50 << 20,
		ProfileRequiresAuth:       true,
		RequestBodyTimeout:        30 * time.Second,
		BindingLinkCodeTTL:        10 * time.Minute,
	}
	setDefaultRateLimits(&want)
	want.Federation = federationDefaults()
	if c != want {
		t.Errorf("Load(\"\", nil) =\n%+v\nwant\n%+v", c, want)
	}
	if d := finished(Defaults()); d != want {
		t.Errorf("finished Defaults() = %+v, want %+v", d, want)
	}
	if kind, dsn := c.DatabaseKind(); kind != KindSQLite || dsn != filepath.Join("data", "eimis.db") {
		t.Errorf("DatabaseKind() = %q, %q", kind, dsn)
	}
	if !c.EmbeddedNATS() || c.NATSStoreDir() != filepath.Join("data", "nats") {
		t.Errorf("embedded NATS = %v in %q", c.EmbeddedNATS(), c.NATSStoreDir())
	}

	c, err = Load("testdata/empty.yaml", nil)
	if err != nil || c != want {
		t.Errorf("Load(empty.yaml) = %+v, %v; want defaults", c, err)
	}
}

func TestLoadValidFile(t *testing.T) {
	c, err := Load("testdata/valid.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ServerName:                "example.org",
		Listen:                    "0.0.0.0:8448",
		PublicBaseURL:             "https://matrix.example.org",
		DataDir:                   "/var/lib/eimis",
		Database:                  "postgres://eimis:secret@db.internal:5432/eimis?sslmode=require",
		NATS:                      "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222",
		SigningKeyPath:            "/etc/eimis/signing.key",
		RegistrationSharedSecret:  "0123456789abcdef0123",
		EnableRegistration:        true,
		RoomVersion:               "12",
		MaxEventBytes:             MaxEventBytes,
		LogLevel:                  "debug",
		LogFormat:                 "json",
		SyncMaxTimeout:            45 * time.Second,
		NATSStreamMaxAge:          72 * time.Hour,
		NATSSyncInterval:          time.Second,
		NATSReplicas:              3,
		TrustReloadInterval:       10 * time.Second,
		DirectoryFHIRInterval:     time.Hour,
		DirectoryFHIRFullInterval: 7 * 24 * time.Hour,
		PSCACRValues:              "eidas1",
		AuditRetention:            183 * 24 * time.Hour,
		MediaDir:                  "/var/lib/eimis/media",
		MediaMaxUploadBytes:       50 << 20,
		ProfileRequiresAuth:       false,
		RequestBodyTimeout:        time.Minute,
		BindingLinkCodeTTL:        10 * time.Minute,
	}
	setDefaultRateLimits(&want)
	want.Federation = federationDefaults()
	if c != want {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if kind, dsn := c.DatabaseKind(); kind != KindPostgres || dsn != want.Database {
		t.Errorf("DatabaseKind() = %q, %q", kind, dsn)
	}
}

// One Load call must report every mistake in the file, each with its line
// where the file is the culprit.
func TestLoadInvalidFileListsEveryProblem(t *testing.T) {
	_, err := Load("testdata/invalid.yaml", nil)
	p := problemsOf(t, err)
	want := []string{
		`invalid.yaml:5: unknown key "sever_name" (did you mean server_name?)`,
		`invalid.yaml:12: nats_stream_max_age: expected a duration`,
		`invalid.yaml:14: enable_registration: expected true or false, got "maybe"`,
		`invalid.yaml:15: max_event_bytes cannot be configured`,
		`invalid.yaml:17: log_level is already set on line 9`,
		`server_name: "bad name!" is not a valid Matrix server name`,
		`listen: "localhost" is not a valid host:port`,
		`public_base_url: "ftp://files.example.org": must start with http:// or https://`,
		`database: "mysql://db/eimis" is not a recognised database URL`,
		`registration_shared_secret: must be at least 16 characters when set (got 5)`,
		`default_room_version: "9" is not supported`,
		`log_level: "chatty" is not one of debug, info, warn, error`,
		`log_format: "xml" is not one of text, json`,
		`sync_max_timeout: must not be negative`,
		`nats_replicas: 3 needs an external NATS cluster`,
	}
	for _, w := range want {
		if !containsProblem(p, w) {
			t.Errorf("problem %q not reported", w)
		}
	}
	if len(p) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(p), len(want), err)
	}
	// One problem per line keeps the message readable in a terminal.
	if lines := strings.Count(err.Error(), "\n"); lines != len(want) {
		t.Errorf("error text has %d line breaks, want %d:\n%v", lines, len(want), err)
	}
}

func containsProblem(p Problems, substr string) bool {
	for _, s := range p {
		if strings.Contains(s, substr) {
			return true
		}
	}
	return false
}

func TestLoadFileErrors(t *testing.T) {
	_, err := Load("testdata/syntax.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "syntax.yaml") {
		t.Errorf("syntax error should name the file and line 3, got %v", err)
	}

	_, err = Load("testdata/does-not-exist.yaml", nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: want fs.ErrNotExist, got %v", err)
	}

	_, err = Load(writeFile(t, "- server_name: x\n"), nil)
	if p := problemsOf(t, err); len(p) != 1 || !strings.Contains(p[0], "expected a mapping") {
		t.Errorf("top-level list: got %v", err)
	}

	_, err = Load(writeFile(t, "listen:\n  host: x\nnats_replicas: 1.5\n"), nil)
	p := problemsOf(t, err)
	if !containsProblem(p, ":1: listen: expected a string, got a mapping") ||
		!containsProblem(p, `:3: nats_replicas: expected a whole number, got "1.5"`) {
		t.Errorf("type problems: got %v", err)
	}

	// A key left without a value keeps the lower layer, and quoted
	// scalars are accepted for typed settings.
	c, err := Load(writeFile(t, "server_name:\nenable_registration: \"true\"\nnats_replicas: \"1\"\n"), nil)
	if err != nil || c.ServerName != "localhost" || !c.EnableRegistration {
		t.Errorf("null/quoted values: got %+v, %v", c, err)
	}
}

func TestEnvProblemsAreCollectedWithTheRest(t *testing.T) {
	env := []string{
		"EIMIS_NATS_REPLICAS=two",
		"EIMIS_ENABLE_REGISTRATION=maybe",
		"EIMIS_SYNC_MAX_TIMEOUT=10",
		"EIMIS_LOG_LEVEL=loud",
		"EIMIS_REGISTRATION_SHARED_SECRET=hunter2",
	}
	_, err := Load("testdata/invalid.yaml", env)
	p := problemsOf(t, err)
	for _, w := range []string{
		`EIMIS_NATS_REPLICAS: expected a whole number, got "two"`,
		`EIMIS_ENABLE_REGISTRATION: expected true or false, got "maybe"`,
		`EIMIS_SYNC_MAX_TIMEOUT: expected a duration`,
		`log_level: "loud"`,
		`invalid.yaml:5: unknown key "sever_name"`,
		`server_name: "bad name!"`,
	} {
		if !containsProblem(p, w) {
			t.Errorf("problem %q not reported in:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the shared secret leaked into the error:\n%v", err)
	}
}

// Each layer sets server_name (and a few other settings) so the table can
// show which one wins; settings a higher layer leaves alone must survive.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "server_name: yaml.example\nlog_level: warn\ndata_dir: /from/yaml\n")
	tests := []struct {
		name     string
		file     string
		env      []string
		args     []string
		want     string // server name
		wantLog  string
		wantData string
	}{
		{"defaults", "", nil, nil, "localhost", "info", "./data"},
		{"yaml over defaults", file, nil, nil, "yaml.example", "warn", "/from/yaml"},
		{"env over yaml", file, []string{"EIMIS_SERVER_NAME=env.example"}, nil, "env.example", "warn", "/from/yaml"},
		{"flag over env", file, []string{"EIMIS_SERVER_NAME=env.example", "EIMIS_LOG_LEVEL=error"},
			[]string{"--server-name", "flag.example"}, "flag.example", "error", "/from/yaml"},
		{"flag over yaml", file, nil, []string{"-server-name=flag.example", "-data-dir", "/from/flag"},
			"flag.example", "warn", "/from/flag"},
		{"flag set to the default still wins", file, []string{"EIMIS_SERVER_NAME=env.example"},
			[]string{"--server-name=localhost"}, "localhost", "warn", "/from/yaml"},
		{"empty env is unset", file, []string{"EIMIS_SERVER_NAME="}, nil, "yaml.example", "warn", "/from/yaml"},
		{"first duplicate env wins", "", []string{"EIMIS_SERVER_NAME=first.example", "EIMIS_SERVER_NAME=second.example"},
			nil, "first.example", "info", "./data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", tt.file}, args...)
			}
			c, err := LoadWithFlags(args, newFlagSet(), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.ServerName != tt.want || c.LogLevel != tt.wantLog || c.DataDir != tt.wantData {
				t.Errorf("got server_name=%q log_level=%q data_dir=%q, want %q %q %q",
					c.ServerName, c.LogLevel, c.DataDir, tt.want, tt.wantLog, tt.wantData)
			}
			if want := filepath.Join(tt.wantData, "signing.key"); c.SigningKeyPath != want {
				t.Errorf("derived signing key path %q, want %q", c.SigningKeyPath, want)
			}
			if tt.args == nil && tt.env == nil {
				// Without flags, LoadWithFlags and Load must agree.
				l, err := Load(tt.file, nil)
				if err != nil || l != c {
					t.Errorf("Load = %+v, %v; LoadWithFlags = %+v", l, err, c)
				}
			}
		})
	}
}

func TestLoadWithFlagsConfigFile(t *testing.T) {
	envFile := writeFile(t, "server_name: env-file.example\n")
	flagFile := writeFile(t, "server_name: flag-file.example\n")

	c, err := LoadWithFlags(nil, newFlagSet(), []string{EnvConfigFile + "=" + envFile})
	if err != nil || c.ServerName != "env-file.example" {
		t.Errorf("EIMIS_CONFIG: got %q, %v", c.ServerName, err)
	}
	c, err = LoadWithFlags([]string{"--config=" + flagFile}, newFlagSet(), []string{EnvConfigFile + "=" + envFile})
	if err != nil || c.ServerName != "flag-file.example" {
		t.Errorf("--config over EIMIS_CONFIG: got %q, %v", c.ServerName, err)
	}

	fs := newFlagSet()
	c, err = LoadWithFlags([]string{"--listen", "[::1]:0", "--enable-registration", "--sync-max-timeout", "1m", "serve-arg"}, fs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "[::1]:0" || c.PublicBaseURL != "http://[::1]:0" || !c.EnableRegistration || c.SyncMaxTimeout != time.Minute {
		t.Errorf("flags not applied: %+v", c)
	}
	if got := fs.Args(); len(got) != 1 || got[0] != "serve-arg" {
		t.Errorf("remaining args = %q", got)
	}

	_, err = LoadWithFlags([]string{"-h"}, newFlagSet(), nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: want flag.ErrHelp, got %v", err)
	}

	_, err = LoadWithFlags([]string{"--nats-replicas", "9"}, newFlagSet(), nil)
	if p := problemsOf(t, err); !containsProblem(p, "nats_replicas: 9 is out of range") {
		t.Errorf("flag value not verified: %v", err)
	}
}

func TestBindFlagsDocumentsEverySpelling(t *testing.T) {
	fs := newFlagSet()
	c := Defaults()
	c.BindFlags(fs)
	var help bytes.Buffer
	fs.SetOutput(&help)
	fs.PrintDefaults()
	for _, s := range settings {
		f := fs.Lookup(s.flag)
		if f == nil {
			t.Errorf("flag --%s not registered", s.flag)
			continue
		}
		if want := "(yaml: " + s.key + ", env: " + s.env + ")"; !strings.Contains(f.Usage, want) {
			t.Errorf("--%s usage %q lacks %q", s.flag, f.Usage, want)
		}
		if s.env != "EIMIS_"+strings.ToUpper(s.key) {
			t.Errorf("%s: env var %s does not follow the EIMIS_<KEY> pattern", s.key, s.env)
		}
	}
	for _, want := range []string{
		"-server-name string",
		"server name",
		"(yaml: server_name, env: EIMIS_SERVER_NAME)",
		`(default "localhost")`,
		"-signing-key-path string",
		"former name of --signing-key-path",
		"(default 30s)",
	} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help output lacks %q:\n%s", want, help.String())
		}
	}

	// BindFlags writes into the Config it was called on.
	if err := fs.Parse([]string{"--nats-replicas=3", "--log-format", "json"}); err != nil {
		t.Fatal(err)
	}
	if c.NATSReplicas != 3 || c.LogFormat != "json" {
		t.Errorf("BindFlags did not write into c: %+v", c)
	}
}

// The settings table and the struct's yaml tags must describe the same
// set of keys, or a field would be settable in one layer but not another.
func TestSettingsCoverEveryField(t *testing.T) {
	keys := map[string]bool{}
	for _, s := range settings {
		if keys[s.key] {
			t.Errorf("duplicate setting %s", s.key)
		}
		keys[s.key] = true
	}
	var c Config
	// Inline structs (yaml:",inline") contribute their fields.
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		typ := v.Type()
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			if tag == ",inline" || (f.Anonymous && tag == "") {
				walk(v.Field(i))
				continue
			}
			s, ok := settingBy(func(s setting) bool { return s.key == tag })
			if !ok {
				t.Errorf("field %s (yaml %q) has no setting", f.Name, tag)
				continue
			}
			if got := reflect.ValueOf(s.field(&c)).Pointer(); got != v.Field(i).Addr().Pointer() {
				t.Errorf("setting %s points at the wrong field, want %s", s.key, f.Name)
			}
			delete(keys, tag)
		}
	}
	walk(reflect.ValueOf(&c).Elem())
	for k := range keys {
		t.Errorf("setting %s has no yaml-tagged field", k)
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the single expected problem; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"dns name with port", func(c *Config) { c.ServerName = "matrix.example.org:8448" }, ""},
		{"ipv4", func(c *Config) { c.ServerName = "192.0.2.1" }, ""},
		{"ipv6 with port", func(c *Config) { c.ServerName = "[2001:db8::1]:8448" }, ""},
		{"ipv6", func(c *Config) { c.ServerName = "[::1]" }, ""},
		{"empty server name", func(c *Config) { c.ServerName = "" }, "server_name"},
		{"space in server name", func(c *Config) { c.ServerName = "ex ample.org" }, "server_name"},
		{"unbracketed ipv6", func(c *Config) { c.ServerName = "::1" }, "in brackets"},
		{"unclosed bracket", func(c *Config) { c.ServerName = "[::1" }, "unclosed"},
		{"ipv4 in brackets", func(c *Config) { c.ServerName = "[192.0.2.1]" }, "not an IPv6"},
		{"port zero", func(c *Config) { c.ServerName = "example.org:0" }, "out of range"},
		{"port too big", func(c *Config) { c.ServerName = "example.org:65536" }, "out of range"},
		{"named port", func(c *Config) { c.ServerName = "example.org:https" }, "not a number"},
		{"empty port", func(c *Config) { c.ServerName = "example.org:" }, "port"},
		{"empty label", func(c *Config) { c.ServerName = "example..org" }, "empty label"},
		{"trailing dot", func(c *Config) { c.ServerName = "example.org." }, "empty label"},
		{"listen any port", func(c *Config) { c.Listen = ":8008" }, ""},
		{"listen port zero", func(c *Config) { c.Listen = "127.0.0.1:0" }, ""},
		{"listen hostname", func(c *Config) { c.Listen = "localhost:8008" }, ""},
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" }, "listen"},
		{"listen bad port", func(c *Config) { c.Listen = "127.0.0.1:80800" }, "listen"},
		{"base url https", func(c *Config) { c.PublicBaseURL = "https://matrix.example.org/prefix" }, ""},
		{"base url without scheme", func(c *Config) { c.PublicBaseURL = "matrix.example.org" }, "public_base_url"},
		{"base url with query", func(c *Config) { c.PublicBaseURL = "https://m.example.org/?a=b" }, "query"},
		{"empty data dir", func(c *Config) { c.DataDir = " " }, "data_dir"},
		{"postgres", func(c *Config) { c.Database = "postgres://u@h/db" }, ""},
		{"postgresql", func(c *Config) { c.Database = "postgresql://u@h/db" }, ""},
		{"sqlite url", func(c *Config) { c.Database = "sqlite:///var/lib/eimis.db" }, ""},
		{"file uri", func(c *Config) { c.Database = "file:/tmp/x.db?mode=rwc" }, ""},
		{"bare path", func(c *Config) { c.Database = "/var/lib/eimis.db" }, "database"},
		{"unknown scheme hides password", func(c *Config) { c.Database = "mysql://u:pw@h/db" }, `"mysql://u:xxxxx@h/db"`},
		{"nats url", func(c *Config) { c.NATS = "nats://a:4222, tls://b:4222" }, ""},
		{"nats without scheme", func(c *Config) { c.NATS = "localhost:4222" }, "nats://"},
		{"nats without host", func(c *Config) { c.NATS = "nats://" }, "no host"},
		{"nats hides password", func(c *Config) { c.NATS = "http://u:pw@h" }, `"http://u:xxxxx@h"`},
		{"secret long enough", func(c *Config) { c.RegistrationSharedSecret = strings.Repeat("s", 16) }, ""},
		{"secret too short", func(c *Config) { c.RegistrationSharedSecret = strings.Repeat("s", 15) }, "at least 16"},
		{"room version 10", func(c *Config) { c.RoomVersion = "10" }, ""},
		{"room version 12", func(c *Config) { c.RoomVersion = "12" }, ""},
		{"room version 9", func(c *Config) { c.RoomVersion = "9" }, "default_room_version"},
		{"log level upper case", func(c *Config) { c.LogLevel = "WARN" }, ""},
		{"log level unknown", func(c *Config) { c.LogLevel = "trace" }, "log_level"},
		{"log format unknown", func(c *Config) { c.LogFormat = "logfmt" }, "log_format"},
		{"body timeout off", func(c *Config) { c.RequestBodyTimeout = 0 }, ""},
		{"negative body timeout", func(c *Config) { c.RequestBodyTimeout = -time.Second }, "request_body_timeout"},
		{"zero sync timeout", func(c *Config) { c.SyncMaxTimeout = 0 }, ""},
		{"negative sync timeout", func(c *Config) { c.SyncMaxTimeout = -time.Second }, "sync_max_timeout"},
		{"stream age forever", func(c *Config) { c.NATSStreamMaxAge = 0 }, ""},
		{"negative stream age", func(c *Config) { c.NATSStreamMaxAge = -time.Hour }, "nats_stream_max_age"},
		{"replicas zero", func(c *Config) { c.NATSReplicas = 0 }, "out of range"},
		{"replicas six", func(c *Config) { c.NATS = "nats://n:4222"; c.NATSReplicas = 6 }, "out of range"},
		{"replicas with cluster", func(c *Config) { c.NATS = "nats://n:4222"; c.NATSReplicas = 3 }, ""},
		{"replicas embedded", func(c *Config) { c.NATSReplicas = 3 }, "external NATS"},
		{"insecure binds", func(c *Config) { c.BridgeBindWithoutConsentInsecure = true }, ""},
		{"insecure binds with PSC required", func(c *Config) {
			c.PSCIssuer, c.PSCClientID, c.PSCClientSecret = "https://psc.example", "id", "secret"
			c.BridgeRequirePSCProof, c.BridgeBindWithoutConsentInsecure = true, true
		}, "contradicts bridge_require_psc_proof"},
		{"link code ttl 1h", func(c *Config) { c.BindingLinkCodeTTL = time.Hour }, ""},
		{"link code ttl too short", func(c *Config) { c.BindingLinkCodeTTL = 30 * time.Second }, "binding_link_code_ttl"},
		{"link code ttl too long", func(c *Config) { c.BindingLinkCodeTTL = 24 * time.Hour }, "binding_link_code_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.modify(&c)
			c.Finish()
			err := c.Verify()
			if tt.want == "" {
				if err != nil {
					t.Errorf("unexpected problems: %v", err)
				}
				return
			}
			p := problemsOf(t, err)
			if len(p) != 1 || !strings.Contains(p[0], tt.want) {
				t.Errorf("want one problem containing %q, got %v", tt.want, err)
			}
			if strings.Contains(err.Error(), ":pw@") {
				t.Errorf("password leaked: %v", err)
			}
		})
	}
}

func TestDatabaseKind(t *testing.T) {
	tests := []struct {
		database, dataDir string
		kind, dsn         string
	}{
		{"", "/srv/eimis", KindSQLite, "/srv/eimis/eimis.db"},
		{"postgres://u:p@h:5432/db?sslmode=disable", "", KindPostgres, "postgres://u:p@h:5432/db?sslmode=disable"},
		{"postgresql://h/db", "", KindPostgres, "postgresql://h/db"},
		{"PostgreSQL://h/db", "", KindPostgres, "PostgreSQL://h/db"},
		{"sqlite:///var/lib/eimis/hub.db", "", KindSQLite, "/var/lib/eimis/hub.db"},
		{"sqlite://relative.db", "", KindSQLite, "relative.db"},
		{"file:hub.db?_pragma=busy_timeout(5000)", "", KindSQLite, "file:hub.db?_pragma=busy_timeout(5000)"},
		{"sqlite://", "", "", ""},
		{"file:", "", "", ""},
		{"mysql://h/db", "", "", ""},
		{"eimis.db", "", "", ""},
	}
	for _, tt := range tests {
		c := Config{Database: tt.database, DataDir: tt.dataDir}
		kind, dsn := c.DatabaseKind()
		if kind != tt.kind || dsn != tt.dsn {
			t.Errorf("DatabaseKind(%q) = %q, %q; want %q, %q", tt.database, kind, dsn, tt.kind, tt.dsn)
		}
	}
}

func TestFinish(t *testing.T) {
	tests := []struct {
		listen, base, want string
	}{
		{"127.0.0.1:8008", "", "http://127.0.0.1:8008"},
		{"0.0.0.0:8008", "", "http://localhost:8008"},
		{":8008", "", "http://localhost:8008"},
		{"[::]:8008", "", "http://localhost:8008"},
		{"[::1]:8008", "", "http://[::1]:8008"},
		{"0.0.0.0:8008", "https://matrix.example.org/", "https://matrix.example.org"},
		{"not-an-address", "", ""},
	}
	for _, tt := range tests {
		c := Defaults()
		c.Listen, c.PublicBaseURL = tt.listen, tt.base
		c.Finish()
		if c.PublicBaseURL != tt.want {
			t.Errorf("listen %q base %q: PublicBaseURL = %q, want %q", tt.listen, tt.base, c.PublicBaseURL, tt.want)
		}
	}

	c := Defaults()
	c.SigningKeyPath = "/keys/k"
	c.MaxEventBytes = 1
	c.Finish()
	if c.SigningKeyPath != "/keys/k" || c.MaxEventBytes != MaxEventBytes {
		t.Errorf("Finish: %+v", c)
	}
}

func TestSlogLevel(t *testing.T) {
	for level, want := range map[string]string{"debug": "DEBUG", "INFO": "INFO", "warn": "WARN", "error": "ERROR", "bogus": "INFO"} {
		if got := (Config{LogLevel: level}).SlogLevel().String(); got != want {
			t.Errorf("SlogLevel(%q) = %s, want %s", level, got, want)
		}
	}
}

func TestProblemsError(t *testing.T) {
	tests := []struct {
		p    Problems
		want string
	}{
		{Problems{"a is wrong"}, "invalid configuration: a is wrong"},
		{Problems{"a is wrong", "b is wrong"}, "invalid configuration (2 problems):\n  - a is wrong\n  - b is wrong"},
	}
	for _, tt := range tests {
		if got := tt.p.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if err := finished(Defaults()).Verify(); err != nil {
		t.Errorf("a valid config must give a nil error interface, got %#v", err)
	}
}
