package main

import (
	"flag"
	"net/url"
	"os"
	"strings"

	"github.com/eimis-hub/eimis/internal/config"
)

// storeFlags are the flags another command needs to reach the same store
// and server as serve, for the start banner's `user create` hint: with
// PostgreSQL, --data-dir alone would open an empty SQLite file instead. A
// password in the database URL is never printed.
func storeFlags(cfg config.Config, fs *flag.FlagSet) string {
	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		return "--config " + shellQuote(f.Value.String())
	}
	if p := os.Getenv(config.EnvConfigFile); p != "" {
		return "--config " + shellQuote(p)
	}
	var parts []string
	kind, _ := cfg.DatabaseKind()
	if kind == config.KindPostgres {
		parts = append(parts, "--database "+shellQuote(hidePassword(cfg.Database)))
	} else {
		parts = append(parts, "--data-dir "+shellQuote(cfg.DataDir))
		if cfg.Database != "" {
			parts = append(parts, "--database "+shellQuote(cfg.Database))
		}
	}
	if cfg.ServerName != config.Defaults().ServerName {
		parts = append(parts, "--server-name "+shellQuote(cfg.ServerName))
	}
	return strings.Join(parts, " ")
}

// hidePassword replaces the URL's password with a placeholder the operator
// fills in.
func hidePassword(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); !has {
		return raw
	}
	u.User = url.UserPassword(u.User.Username(), "PASSWORD")
	return strings.Replace(u.String(), "PASSWORD", "<password>", 1)
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@,=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
