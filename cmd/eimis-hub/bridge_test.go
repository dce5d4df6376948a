package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/store"
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
	if _, err := st.PutBinding(context.Background(), store.Binding{Kind: store.BindingBridge, AppID: "acme-prod",
		UserID: "@810000000017:localhost", Proof: store.ProofLinkCode, BoundAt: time.UnixMilli(1_700_000_000_000)}); err != nil {
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

func TestBridgeBindingsCLI(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	if code, out, errs := runCLI(t, "operator", "add", "--data-dir", dir, "--id", "acme", "--name", "ACME",
		"--server", "acme.example", "--contact", "security@acme.example"); code != 0 {
		t.Fatalf("operator add: %d %q %q", code, out, errs)
	}
	if code, out, errs := runCLI(t, "bridge", "add", "--data-dir", dir, "--operator", "acme", "--id", "acme-prod"); code != 0 {
		t.Fatalf("bridge add: %d %q %q", code, out, errs)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "eimis.db"))
	if err != nil {
		t.Fatal(err)
	}
	for lp, proof := range map[string]string{"810000000017": store.ProofLinkCode, "810000000025": store.ProofLegacy} {
		if _, err := st.PutBinding(context.Background(), store.Binding{Kind: store.BindingBridge, AppID: "acme-prod",
			UserID: "@" + lp + ":localhost", Proof: proof}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	bb := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"bridge", "bindings"}, append(args, "--data-dir", dir)...)...)
	}
	code, out, _ := bb("list")
	if code != 0 || !regexp.MustCompile(`acme-prod\s+@810000000017:localhost\s+link_code\s+true`).MatchString(out) ||
		!regexp.MustCompile(`acme-prod\s+@810000000025:localhost\s+legacy\s+false`).MatchString(out) {
		t.Fatalf("list: %d %q", code, out)
	}
	code, out, _ = bb("list", "--json", "--user", "810000000017")
	var list struct {
		Bindings []struct {
			Door   string `json:"door"`
			UserID string `json:"user_id"`
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Bindings) != 1 ||
		list.Bindings[0].UserID != "@810000000017:localhost" || list.Bindings[0].Door != "bridge" {
		t.Fatalf("list --json --user: %d %q", code, out)
	}
	code, out, errs := bb("revoke", "--bridge", "acme-prod", "--user", "810000000017")
	if code != 0 || !strings.Contains(out, "no longer acts for @810000000017:localhost") {
		t.Fatalf("revoke: %d %q %q", code, out, errs)
	}
	if code, _, errs := bb("revoke", "--bridge", "acme-prod", "--user", "810000000017"); code != 1 || !strings.Contains(errs, "does not act for") {
		t.Fatalf("revoke again: %d %q", code, errs)
	}
	if code, _, errs := bb("revoke", "--bridge", "acme-prod"); code != 1 || !strings.Contains(errs, "--user are required") {
		t.Fatalf("revoke without user: %d %q", code, errs)
	}
	if code, out, _ := bb("list", "--user", "810000000017"); code != 0 || !strings.Contains(out, "no bindings") {
		t.Fatalf("list after revoke: %d %q", code, out)
	}
	// The revocation is in the audit trail, with who did it.
	st, err = sqlite.Open(context.Background(), filepath.Join(dir, "eimis.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var found []store.AuditEntry
	if _, err := st.ReadAudit(context.Background(), store.AuditQuery{}, func(e store.AuditEntry) error {
		if e.Action == "binding.revoke" {
			found = append(found, e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Target != "@810000000017:localhost" || !strings.HasPrefix(found[0].Actor, "cli:") ||
		found[0].Reason != "app=bridge:acme-prod" {
		t.Fatalf("audit entries = %+v", found)
	}
}
