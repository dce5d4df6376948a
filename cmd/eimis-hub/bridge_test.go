package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

func TestBridgeCLI(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	br := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"bridge"}, args...)...)
	}
	if code, out, errs := runCLI(t, "operator", "add", "--data-dir", dir, "--id", "acme", "--name", "ACME",
		"--server", "acme.example", "--contact", "security@acme.example"); code != 0 {
		t.Fatalf("operator add: %d %q %q", code, out, errs)
	}
	if code, out, _ := br("list", "--data-dir", dir); code != 0 || !strings.Contains(out, "no bridges") {
		t.Fatalf("empty list: %d %q", code, out)
	}
	code, out, errs := br("add", "--data-dir", dir, "--operator", "acme", "--id", "acme-prod")
	if code != 0 || !strings.Contains(out, "added bridge acme-prod of operator acme") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	token := regexp.MustCompile(`token: (eimisb_\S+)`).FindStringSubmatch(out)
	if token == nil {
		t.Fatalf("no token printed: %q", out)
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"duplicate", []string{"add", "--data-dir", dir, "--operator", "acme", "--id", "acme-prod"}, "acme-prod already exists"},
		{"unknown operator", []string{"add", "--data-dir", dir, "--operator", "nobody", "--id", "x"}, "no operator nobody"},
		{"no operator", []string{"add", "--data-dir", dir, "--id", "x"}, "--operator is required"},
		{"bad id", []string{"add", "--data-dir", dir, "--operator", "acme", "--id", "Bad"}, "invalid --id"},
		{"revoke unknown", []string{"revoke", "--data-dir", dir, "nobody"}, "no bridge nobody"},
		{"revoke without id", []string{"revoke", "--data-dir", dir}, "ID is missing"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
	} {
		if code, _, errs := br(c.args...); code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", c.name, code, errs, c.want)
		}
	}

	// Only the token's hash is stored, and it finds the bridge.
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "eimis.db"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.BridgeByTokenHash(context.Background(), gateway.HashToken(token[1]))
	if err != nil || b.ID != "acme-prod" || strings.Contains(string(b.TokenHash), token[1]) {
		t.Fatalf("stored bridge: %+v %v", b, err)
	}
	if _, err := st.BindBridgeUser(context.Background(), "acme-prod", "@810000000017:localhost"); err != nil {
		t.Fatal(err)
	}
	st.Close()

	code, out, _ = br("list", "--data-dir", dir)
	if code != 0 || !regexp.MustCompile(`acme-prod\s+acme\s+active\s+1\s`).MatchString(out) {
		t.Fatalf("list: %d %q", code, out)
	}
	code, out, errs = br("revoke", "acme-prod", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "bridge acme-prod is revoked") {
		t.Fatalf("revoke: %d %q %q", code, out, errs)
	}
	code, out, _ = br("list", "--json", "--data-dir", dir)
	var list struct {
		Bridges []struct {
			ID, Operator, Status string
			Users                []string
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Bridges) != 1 || list.Bridges[0].Status != "revoked" ||
		len(list.Bridges[0].Users) != 1 {
		t.Fatalf("list --json: %d %q", code, out)
	}
}
