package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// noDefaultStore runs the test from an empty directory and fails it if
// anything created the default ./data store there: a command line that is
// refused must not open (and so create) a database.
func noDefaultStore(t *testing.T) {
	t.Helper()
	t.Chdir(t.TempDir())
	t.Cleanup(func() {
		if _, err := os.Stat("data"); err == nil {
			t.Error("a command created the default ./data store")
		}
	})
}

func TestOperatorCLI(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	op := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"operator"}, args...)...)
	}

	if code, out, errs := op("list", "--data-dir", dir); code != 0 || !strings.Contains(out, "no operators") {
		t.Fatalf("empty list: %d %q %q", code, out, errs)
	}
	code, out, errs := op("add", "--data-dir", dir, "--id", "acme", "--name", "ACME Messenger",
		"--server", "matrix.acme.example:8448", "--server", "acme.example", "--contact", "security@acme.example")
	if code != 0 || !strings.Contains(out, "added operator acme") || !strings.Contains(out, "acme.example, matrix.acme.example:8448") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if code, out, errs := op("add", "--data-dir", dir, "--id", "globex", "--name", "Globex Santé",
		"--server", "globex.example", "--contact", "https://globex.example/contact"); code != 0 {
		t.Fatalf("add globex: %d %q %q", code, out, errs)
	}

	for _, c := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"duplicate id", []string{"add", "--data-dir", dir, "--id", "acme", "--name", "X", "--server", "x.example", "--contact", "a@x.example"}, "acme already exists"},
		{"claimed server", []string{"add", "--data-dir", dir, "--id", "x", "--name", "X", "--server", "acme.example", "--contact", "a@x.example"}, "acme.example already belongs to operator acme"},
		{"no server", []string{"add", "--data-dir", dir, "--id", "x", "--name", "X", "--contact", "a@x.example"}, "invalid --server"},
		{"bad server", []string{"add", "--data-dir", dir, "--id", "x", "--name", "X", "--server", "X.Example", "--contact", "a@x.example"}, "lowercase"},
		{"hub's own server", []string{"add", "--data-dir", dir, "--id", "x", "--name", "X", "--server", "localhost", "--contact", "a@x.example"}, "this hub's own server name"},
		{"hub's own host, another port", []string{"add", "--data-dir", dir, "--id", "x", "--name", "X", "--server", "x.example", "--server", "localhost:8448", "--contact", "a@x.example"}, "this hub's own server name"},
		{"bad id", []string{"add", "--data-dir", dir, "--id", "X", "--name", "X", "--server", "x.example", "--contact", "a@x.example"}, "invalid --id"},
		{"no contact", []string{"add", "--data-dir", dir, "--id", "x", "--name", "X", "--server", "x.example"}, "invalid --contact"},
		{"stray argument", []string{"add", "--data-dir", dir, "--id", "x", "--name", "X", "--server", "x.example", "--contact", "a@x.example", "extra"}, "unexpected argument"},
		{"suspend without reason", []string{"suspend", "--data-dir", dir, "acme"}, "invalid --reason"},
		{"suspend without id", []string{"suspend", "--data-dir", dir, "--reason", "x"}, "ID is missing"},
		{"suspend unknown", []string{"suspend", "--data-dir", dir, "--reason", "x", "nobody"}, "no operator nobody"},
		{"flags after a trailing id", []string{"suspend", "--reason", "x", "acme", "--data-dir", dir}, "give the ID first or after all the flags"},
	} {
		if code, _, errs := op(c.args...); code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", c.name, code, errs, c.want)
		}
	}

	// The ID may come after the flags or first.
	code, out, errs = op("suspend", "--data-dir", dir, "--reason", "incident 42", "acme")
	if code != 0 || !strings.Contains(out, "acme is now suspended (reason: incident 42)") {
		t.Fatalf("suspend: %d %q %q", code, out, errs)
	}
	code, out, errs = op("list", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("list: %d %q", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("list: %q", out)
	}
	for i, want := range [][]string{
		{"acme", "suspended", "acme.example,matrix.acme.example:8448", "ACME Messenger", "security@acme.example"},
		{"globex", "active", "globex.example", "Globex Santé", "https://globex.example/contact"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("list row %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}

	if code, out, errs := op("reactivate", "acme", "--data-dir", dir); code != 0 || !strings.Contains(out, "acme is now active") {
		t.Fatalf("reactivate: %d %q %q", code, out, errs)
	}
	if code, out, errs := op("revoke", "globex", "--data-dir", dir, "--reason", "contract ended"); code != 0 || !strings.Contains(out, "globex is now revoked") {
		t.Fatalf("revoke: %d %q %q", code, out, errs)
	}
	if code, _, errs := op("reactivate", "globex", "--data-dir", dir); code != 1 || !strings.Contains(errs, "revocation is final") {
		t.Fatalf("reactivate revoked: %d %q", code, errs)
	}

	code, out, errs = op("list", "--json", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("list --json: %d %q", code, errs)
	}
	var listed struct {
		Operators []struct {
			ID           string   `json:"id"`
			Status       string   `json:"status"`
			StatusReason string   `json:"status_reason"`
			ServerNames  []string `json:"server_names"`
			CreatedAt    string   `json:"created_at"`
		} `json:"operators"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("list --json is not JSON: %v\n%s", err, out)
	}
	if len(listed.Operators) != 2 {
		t.Fatalf("list --json: %s", out)
	}
	a, g := listed.Operators[0], listed.Operators[1]
	if a.ID != "acme" || a.Status != "active" || len(a.ServerNames) != 2 || a.CreatedAt == "" ||
		g.ID != "globex" || g.Status != "revoked" || g.StatusReason != "contract ended" {
		t.Fatalf("list --json: %s", out)
	}
}

func TestOperatorCLIUsage(t *testing.T) {
	noDefaultStore(t)
	if code, _, errs := runCLI(t, "operator"); code != 1 || !strings.Contains(errs, "operator add") {
		t.Fatalf("no command: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "operator", "frobnicate"); code != 1 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, out, _ := runCLI(t, "operator", "help"); code != 0 || !strings.Contains(out, "revoking is final") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "operator", "add", "--help"); code != 0 || !strings.Contains(errs, "-server") || !strings.Contains(errs, "-data-dir") {
		t.Fatalf("add --help: %d %q", code, errs)
	}
}
