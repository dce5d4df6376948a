package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/eimis-hub/eimis/internal/config"
)

func TestStoreFlags(t *testing.T) {
	t.Setenv(config.EnvConfigFile, "")
	for _, tc := range []struct {
		name      string
		mod       func(*config.Config)
		want      string
		forbidden string
	}{
		{"sqlite", func(c *config.Config) { c.DataDir = "/var/lib/eimis" }, "--data-dir /var/lib/eimis", "--database"},
		{"postgres keeps the database and hides the password", func(c *config.Config) {
			c.Database = "postgres://eimis:s3cret@db:5432/eimis"
			c.ServerName = "hub.example.org"
		}, "--database postgres://eimis:<password>@db:5432/eimis --server-name hub.example.org", "s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Defaults()
			tc.mod(&c)
			got := storeFlags(c, flag.NewFlagSet("x", flag.ContinueOnError))
			got = strings.ReplaceAll(got, "'", "")
			if !strings.Contains(got, tc.want) || strings.Contains(got, tc.forbidden) {
				t.Fatalf("storeFlags = %q, want %q without %q", got, tc.want, tc.forbidden)
			}
		})
	}
}
