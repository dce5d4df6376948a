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
	sample := filepath.Join("..", "..", "schemas", "sample", "PS_LibreAcces_Personne_activite_sample.txt")
	const doctor, pharmacist = "810000000017", "810000000090"
	// No directory yet: nobody can be checked, so nobody gets an account.
	if code, _, errs := runCLI(t, "user", "create", "--data-dir", dir, "--localpart", doctor, "--password", "pw"); code != 1 || !strings.Contains(errs, "not loaded") {
		t.Fatalf("before any import: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "directory", "import", "--data-dir", dir, sample); code != 0 {
		t.Fatalf("import: %q", errs)
	}
	code, out, errs := runCLI(t, "user", "create", "--data-dir", dir, "--server-name", "hub.test", "--localpart", doctor, "--password", "pw")
	if code != 0 || !strings.Contains(out, "@"+doctor+":hub.test") {
		t.Fatalf("user create: %d %q %q", code, out, errs)
	}
	cases := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"duplicate", []string{"--localpart", doctor, "--password", "pw"}, "exists"},
		{"missing password", []string{"--localpart", pharmacist}, "required"},
		{"not a practitioner", []string{"--localpart", "alice", "--password", "pw"}, "is not a health professional's identifier"},
		{"not in directory", []string{"--localpart", "810000009999", "--password", "pw"}, ""},
		{"bad kind", []string{"--localpart", "svc", "--kind", "robot", "--name", "X", "--password", "pw"}, "--kind"},
		{"service needs responsible", []string{"--localpart", "svc", "--kind", "organisational", "--name", "X", "--password", "pw"}, "--responsible"},
		{"service responsible unknown", []string{"--localpart", "svc2", "--kind", "applicative", "--name", "Lab", "--responsible", "810000000000", "--password", "pw"}, "responsible"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := runCLI(t, append([]string{"user", "create", "--data-dir", dir}, c.args...)...)
			if code != 1 || !strings.Contains(errs, c.want) {
				t.Fatalf("got %d %q, want failure mentioning %q", code, errs, c.want)
			}
		})
	}
	t.Setenv("EIMIS_USER_PASSWORD", "from-env")
	if code, _, errs := runCLI(t, "user", "create", "--data-dir", dir, "--localpart", pharmacist); code != 0 {
		t.Fatalf("password from env: %d %q", code, errs)
	}
	code, out, errs = runCLI(t, "user", "create", "--data-dir", dir, "--server-name", "hub.test", "--localpart", "cardio-lyon",
		"--kind", "organisational", "--name", "Cardiologie", "--responsible", doctor)
	if code != 0 || !strings.Contains(out, "@cardio-lyon:hub.test") {
		t.Fatalf("organisational account: %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "eimis.db")); err != nil {
		t.Fatalf("SQLite database not created in the data dir: %v", err)
	}
}

func TestSample(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI(t, "sample", "--data-dir", dir, "--server-name", "hub.test")
	if code != 0 {
		t.Fatalf("sample: %d %q", code, errs)
	}
	for _, want := range []string{"@810000000017:hub.test", "Hélène Fontenelle - Médecin", "active", "@810000000314:hub.test", "refused: practitioner 810000000314 is not active"} {
		if !strings.Contains(out, want) {
			t.Errorf("sample output lacks %q:\n%s", want, out)
		}
	}
	// Idempotent: make run calls it at every start.
	code, out, errs = runCLI(t, "sample", "--data-dir", dir, "--server-name", "hub.test")
	if code != 0 || !strings.Contains(out, "already loaded") {
		t.Fatalf("second sample: %d %q %q", code, out, errs)
	}
	if code, out, _ := runCLI(t, "directory", "stats", "--data-dir", dir); code != 0 || !strings.Contains(out, "30 active, 2 inactive") {
		t.Fatalf("stats after sample: %q", out)
	}
}

func TestDirectoryImportAndStats(t *testing.T) {
	dir := t.TempDir()
	sample := filepath.Join("..", "..", "schemas", "sample", "PS_LibreAcces_Personne_activite_sample.txt")
	if code, out, _ := runCLI(t, "directory", "stats", "--data-dir", dir); code != 0 || !strings.Contains(out, "no directory") {
		t.Fatalf("stats before import: %d %q", code, out)
	}
	code, out, errs := runCLI(t, "directory", "import", "--data-dir", dir, sample)
	if code != 0 || !strings.Contains(out, "30 practitioners") || !strings.Contains(out, "UTF-8") || !strings.Contains(out, "30 active") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "directory", "stats", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "30 active, 0 inactive") {
		t.Fatalf("stats: %d %q", code, out)
	}
	stats := out

	// bad_rows.txt has 4 bad rows: beyond the limit, the import is refused
	// with the offending lines listed, and the directory stays as it was.
	bad := filepath.Join("..", "..", "internal", "directory", "testdata", "bad_rows.txt")
	code, out, errs = runCLI(t, "directory", "import", "--data-dir", dir, "--max-bad-rows", "2", bad)
	if code != 1 || !strings.Contains(out, "bad rows: 3") || !strings.Contains(out, "line 4:") ||
		!strings.Contains(out, "refused") || !strings.Contains(errs, "too many bad rows") {
		t.Fatalf("import with too many bad rows: %d %q %q", code, out, errs)
	}
	if code, out, _ := runCLI(t, "directory", "stats", "--data-dir", dir); code != 0 || out != stats {
		t.Fatalf("stats after a refused import: %d %q, want %q", code, out, stats)
	}

	for _, args := range [][]string{{"directory"}, {"directory", "frob"}} {
		if code, _, errs := runCLI(t, args...); code != 2 || !strings.Contains(errs, "directory import") {
			t.Fatalf("%v: %d %q", args, code, errs)
		}
	}
	if code, _, errs := runCLI(t, "directory", "import", "--data-dir", dir); code != 1 || !strings.Contains(errs, "FILE") {
		t.Fatalf("import without a file: %d %q", code, errs)
	}
}
