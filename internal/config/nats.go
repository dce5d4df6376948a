package config

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// NATSSecurity is how the hub authenticates to an external NATS cluster
// and checks who it is talking to, plus the one way to expose the embedded
// server. At most one credential kind may be set: NATS itself refuses a
// connection that offers two, and a clear config error beats a refused
// connection at start-up.
type NATSSecurity struct {
	// NATSUser and NATSPassword authenticate with user/password.
	NATSUser     string `yaml:"nats_user"`
	NATSPassword string `yaml:"nats_password"`
	// NATSToken authenticates with a bearer token.
	NATSToken string `yaml:"nats_token"`
	// NATSNKeySeedFile is a file holding an NKey user seed (SU…).
	NATSNKeySeedFile string `yaml:"nats_nkey_seed_file"`
	// NATSCredsFile is a decentralised-auth .creds file (JWT and seed).
	NATSCredsFile string `yaml:"nats_creds_file"`
	// NATSCAFile is the PEM CA bundle the server certificate must chain
	// to; setting it (or a client certificate) turns TLS on.
	NATSCAFile string `yaml:"nats_ca_file"`
	// NATSCertFile and NATSKeyFile are the client certificate and key for
	// mutual TLS.
	NATSCertFile string `yaml:"nats_cert_file"`
	NATSKeyFile  string `yaml:"nats_key_file"`
	// NATSEmbeddedListen, when set, makes the embedded server also accept
	// TCP clients on this loopback host:port (the nats CLI, a backup
	// tool). Empty keeps it reachable from inside the process only.
	NATSEmbeddedListen string `yaml:"nats_embedded_listen"`
}

func init() {
	settings = append(settings, natsSettings...)
}

var natsSettings = []setting{
	{"nats_user", "EIMIS_NATS_USER", "nats-user",
		"external NATS: user name (with nats_password)",
		func(c *Config) any { return &c.NATSUser }},
	{"nats_password", "EIMIS_NATS_PASSWORD", "nats-password",
		"external NATS: password; prefer the file or env, flags show in ps",
		func(c *Config) any { return &c.NATSPassword }},
	{"nats_token", "EIMIS_NATS_TOKEN", "nats-token",
		"external NATS: authentication token; prefer the file or env, flags show in ps",
		func(c *Config) any { return &c.NATSToken }},
	{"nats_nkey_seed_file", "EIMIS_NATS_NKEY_SEED_FILE", "nats-nkey-seed-file",
		"external NATS: file holding an NKey user seed (SU…)",
		func(c *Config) any { return &c.NATSNKeySeedFile }},
	{"nats_creds_file", "EIMIS_NATS_CREDS_FILE", "nats-creds-file",
		"external NATS: .creds file (user JWT and NKey seed) for decentralised auth",
		func(c *Config) any { return &c.NATSCredsFile }},
	{"nats_ca_file", "EIMIS_NATS_CA_FILE", "nats-ca-file",
		"external NATS: PEM CA bundle the server certificate must chain to (turns TLS on)",
		func(c *Config) any { return &c.NATSCAFile }},
	{"nats_cert_file", "EIMIS_NATS_CERT_FILE", "nats-cert-file",
		"external NATS: client certificate (PEM) for mutual TLS, with nats_key_file",
		func(c *Config) any { return &c.NATSCertFile }},
	{"nats_key_file", "EIMIS_NATS_KEY_FILE", "nats-key-file",
		"external NATS: client private key (PEM) for mutual TLS",
		func(c *Config) any { return &c.NATSKeyFile }},
	{"nats_embedded_listen", "EIMIS_NATS_EMBEDDED_LISTEN", "nats-embedded-listen",
		"embedded NATS: also accept TCP clients on this loopback host:port (e.g. 127.0.0.1:4222); empty: reachable from inside the process only",
		func(c *Config) any { return &c.NATSEmbeddedListen }},
}

// natsProblems checks the NATS security settings. File contents are never
// echoed: they are secrets.
func (c Config) natsProblems() Problems {
	var p Problems
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	var kinds []string
	if c.NATSUser != "" || c.NATSPassword != "" {
		kinds = append(kinds, "nats_user/nats_password")
		if c.NATSUser == "" || c.NATSPassword == "" {
			add("nats_user and nats_password: set both or neither")
		}
	}
	if c.NATSToken != "" {
		kinds = append(kinds, "nats_token")
	}
	if c.NATSNKeySeedFile != "" {
		kinds = append(kinds, "nats_nkey_seed_file")
	}
	if c.NATSCredsFile != "" {
		kinds = append(kinds, "nats_creds_file")
	}
	if len(kinds) > 1 {
		add("NATS credentials: choose one of %s", strings.Join(kinds, ", "))
	}
	if (c.NATSCertFile == "") != (c.NATSKeyFile == "") {
		add("nats_cert_file and nats_key_file: set both or neither")
	}
	external := !c.EmbeddedNATS()
	for _, f := range []struct{ key, path string }{
		{"nats_nkey_seed_file", c.NATSNKeySeedFile}, {"nats_creds_file", c.NATSCredsFile},
		{"nats_ca_file", c.NATSCAFile}, {"nats_cert_file", c.NATSCertFile}, {"nats_key_file", c.NATSKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if !external {
			add("%s: only applies to an external NATS (set nats)", f.key)
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			add("%s: %v", f.key, err)
		}
	}
	if !external && (c.NATSUser != "" || c.NATSPassword != "" || c.NATSToken != "") {
		add("nats_user, nats_password, nats_token: only apply to an external NATS (set nats)")
	}
	if l := strings.TrimSpace(c.NATSEmbeddedListen); l != "" {
		if external {
			add("nats_embedded_listen: only applies to the embedded NATS (nats is set)")
		} else if err := checkLoopback(l); err != nil {
			add("nats_embedded_listen: %q: %v", l, err)
		}
	}
	return p
}

// checkLoopback accepts host:port with a loopback host only: the embedded
// server has no authentication, so it must not be reachable from another
// machine. A cluster reachable from elsewhere is an external NATS.
func checkLoopback(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if err := checkPort(port, true); err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("must be a loopback address (127.0.0.1, ::1 or localhost): the embedded server has no authentication; use an external NATS cluster to serve other machines")
	}
	return nil
}
