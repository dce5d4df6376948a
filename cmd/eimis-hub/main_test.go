package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eimis-hub/eimis/internal/signingkey"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "eimis-hub ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errs := runCLI(t); code != 2 || !strings.Contains(errs, "Usage") {
		t.Fatalf("no args: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "serve", "--help"); code != 0 || !strings.Contains(errs, "EIMIS_DATABASE") {
		t.Fatalf("serve --help must document env variables: %d %q", code, errs)
	}
}

func TestKeygen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if code, out, errs := runCLI(t, "keygen", "--out", path); code != 0 || !strings.Contains(out, "ed25519:") {
		t.Fatalf("keygen: %d %q %q", code, out, errs)
	}
	if _, err := signingkey.Read(path); err != nil {
		t.Fatalf("written key does not read back: %v", err)
	}
	if code, _, errs := runCLI(t, "keygen", "--out", path); code != 1 || !strings.Contains(errs, "exist") {
		t.Fatalf("keygen must refuse to overwrite: %d %q", code, errs)
	}
	if code, out, _ := runCLI(t, "keygen"); code != 0 || !strings.HasPrefix(out, "ed25519 ") {
		t.Fatalf("keygen to stdout: %d %q", code, out)
	}
}

func TestInvalidConfigListsEveryProblem(t *testing.T) {
	code, _, errs := runCLI(t, "serve", "--server-name", "bad name", "--listen", "nope", "--log-level", "loud", "--data-dir", t.TempDir())
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"server_name", "listen", "log_level"} {
		if !strings.Contains(errs, want) {
			t.Errorf("error output lacks %q:\n%s", want, errs)
		}
	}
}

func TestUserCreate(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI(t, "user", "create", "--data-dir", dir, "--server-name", "hub.test", "--localpart", "alice", "--password", "pw")
	if code != 0 || !strings.Contains(out, "@alice:hub.test") {
		t.Fatalf("user create: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "user", "create", "--data-dir", dir, "--localpart", "alice", "--password", "pw"); code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("duplicate user: %d %q", code, errs)
	}
	if code, _, _ := runCLI(t, "user", "create", "--data-dir", dir, "--localpart", "bob"); code != 1 {
		t.Fatalf("missing password must fail, got %d", code)
	}
	t.Setenv("EIMIS_USER_PASSWORD", "from-env")
	if code, _, errs := runCLI(t, "user", "create", "--data-dir", dir, "--localpart", "bob"); code != 0 {
		t.Fatalf("password from env: %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "eimis.db")); err != nil {
		t.Fatalf("SQLite database not created in the data dir: %v", err)
	}
}
