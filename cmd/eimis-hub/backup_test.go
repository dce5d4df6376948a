package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupRestoreCLI runs the commands as an operator would, on SQLite
// and the embedded NATS with no hub running.
func TestBackupRestoreCLI(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	out := filepath.Join(t.TempDir(), "backup")
	mustRun := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("eimis-hub %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}
	mustRun("sample", "--data-dir", d1)
	mustRun("keygen", "--out", filepath.Join(d1, "signing.key"))
	before := mustRun("directory", "stats", "--data-dir", d1)
	if o := mustRun("backup", "--data-dir", d1, "--out", out); !strings.Contains(o, "sqlite database") {
		t.Fatalf("backup output: %s", o)
	}
	mustRun("restore", "--data-dir", d2, "--in", out)
	if after := mustRun("directory", "stats", "--data-dir", d2); after != before {
		t.Fatalf("directory after restore:\n%s\nbefore:\n%s", after, before)
	}
	if code, _, stderr := runCLI(t, "restore", "--data-dir", d2, "--in", out); code == 0 || !strings.Contains(stderr, "--force") {
		t.Fatalf("restore over an existing database: exit %d, %s", code, stderr)
	}

	o := mustRun("signing-key", "rotate", "--data-dir", d2)
	if !strings.Contains(o, "old verify key") {
		t.Fatalf("rotate output: %s", o)
	}
}
