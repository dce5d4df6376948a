package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

// seedAudit records n entries, one a minute from 2025-11-03T08:00Z, in
// the data dir's database.
func seedAudit(t *testing.T, dir string, n int) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "eimis.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tr := audit.New(st, nil, "hub-a")
	defer tr.Close()
	for i := range n {
		err := tr.Record(context.Background(), audit.Entry{
			Time:     time.Date(2025, 11, 3, 8, i, 0, 0, time.UTC),
			Actor:    fmt.Sprintf("@81000000001%d:hub.test", i%10),
			Action:   audit.ActionRoomInvite,
			RoomID:   "!ward:hub.test",
			Target:   "@810000000314:hub.test",
			Decision: audit.Deny,
			Reason:   "EIMIS_INACTIVE_PRACTITIONER",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

var headRE = regexp.MustCompile(`head: (\d+:[0-9a-f]{64})`)

func TestAuditVerify(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI(t, "audit", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "audit trail OK: 0 entries") {
		t.Fatalf("empty trail: %d %q %q", code, out, errs)
	}
	seedAudit(t, dir, 5)
	code, out, errs = runCLI(t, "audit", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "audit trail OK: 5 entries (seq 1..5)") {
		t.Fatalf("verify: %d %q %q", code, out, errs)
	}
	m := headRE.FindStringSubmatch(out)
	if m == nil || !strings.HasPrefix(m[1], "5:") {
		t.Fatalf("verify does not print the head to keep: %q", out)
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--data-dir", dir, "--expect", m[1]); code != 0 {
		t.Fatalf("verify --expect its own head: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "audit", "verify", "--data-dir", dir, "--expect", "5:abc"); code == 0 || !strings.Contains(errs, "SEQ:HASH") {
		t.Fatalf("malformed --expect: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "audit", "verify", "--data-dir", dir, "extra"); code == 0 || !strings.Contains(errs, "unexpected argument") {
		t.Fatalf("stray argument: %d %q", code, errs)
	}

	// Someone edits entry 3 behind the hub's back.
	db, err := sql.Open("sqlite", filepath.Join(dir, "eimis.db")+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET decision = 'allow' WHERE seq = 3`); err == nil {
		t.Fatal("the database let an audit entry be updated")
	}
	for _, q := range []string{`DROP TRIGGER audit_log_no_update`, `UPDATE audit_log SET decision = 'allow' WHERE seq = 3`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	code, out, errs = runCLI(t, "audit", "verify", "--data-dir", dir)
	if code == 0 || !strings.Contains(errs, "broken at seq 3") || !strings.Contains(errs, "changed") {
		t.Fatalf("tampered trail: exit %d, stdout %q, stderr %q; want failure naming seq 3", code, out, errs)
	}
	if !strings.Contains(out, "checked 2 entries (seq 1..2)") {
		t.Fatalf("verify does not say how far it got: %q", out)
	}
}

func TestAuditExport(t *testing.T) {
	dir := t.TempDir()
	seedAudit(t, dir, 6)
	cases := []struct {
		name  string
		args  []string
		code  int
		lines int    // JSON lines on stdout
		want  string // in stderr
	}{
		{"from a date", []string{"--since", "2025-11-03"}, 0, 6, "exported 6 entries"},
		{"window", []string{"--since", "2025-11-03T08:01:00Z", "--until", "2025-11-03T08:04:00Z"}, 0, 3, "exported 3 entries"},
		{"offset time", []string{"--since", "2025-11-03T09:02:00+01:00"}, 0, 4, ""},
		{"after the end", []string{"--since", "2026-01-01"}, 0, 0, "exported 0 entries"},
		{"since required", nil, 1, 0, "--since is required"},
		{"bad time", []string{"--since", "yesterday"}, 1, 0, "--since"},
		{"until before since", []string{"--since", "2025-11-04", "--until", "2025-11-03"}, 1, 0, "--until must be after"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runCLI(t, append([]string{"audit", "export", "--data-dir", dir}, c.args...)...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errs, c.code, c.want)
			}
			if n := strings.Count(out, "\n"); n != c.lines || (n > 0 && !strings.HasPrefix(out, `{"seq":`)) {
				t.Fatalf("%d lines on stdout, want %d JSON lines: %q", n, c.lines, out)
			}
		})
	}

	file := filepath.Join(t.TempDir(), "audit.jsonl")
	code, out, errs := runCLI(t, "audit", "export", "--data-dir", dir, "--since", "2025-11-03", "--out", file)
	if code != 0 || !strings.Contains(out, "exported 6 entries to "+file) {
		t.Fatalf("export --out: %d %q %q", code, out, errs)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		if !strings.Contains(sc.Text(), `"hash":"`) {
			t.Fatalf("line without hash: %s", sc.Text())
		}
	}
	if fi, _ := f.Stat(); lines != 6 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%d lines, mode %v; want 6, 0600", lines, fi.Mode().Perm())
	}
	if code, _, errs := runCLI(t, "audit", "export", "--data-dir", dir, "--since", "2025-11-03", "--out", file); code == 0 || !strings.Contains(errs, "exists") {
		t.Fatalf("export over an existing file: %d %q", code, errs)
	}
}

func TestAuditPurge(t *testing.T) {
	dir := t.TempDir()
	seedAudit(t, dir, 6)
	if code, _, errs := runCLI(t, "audit", "purge", "--data-dir", dir); code == 0 || !strings.Contains(errs, "--before is required") {
		t.Fatalf("purge without --before: %d %q", code, errs)
	}
	code, out, errs := runCLI(t, "audit", "purge", "--data-dir", dir, "--before", "2025-11-03T08:04:00Z")
	if code != 0 || !strings.Contains(out, "purged 4 entries") {
		t.Fatalf("purge: %d %q %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "audit", "purge", "--data-dir", dir, "--before", "2025-11-03T08:04:00Z")
	if code != 0 || !strings.Contains(out, "nothing to purge") {
		t.Fatalf("second purge: %d %q %q", code, out, errs)
	}
	// 5 and 6 are left, then the purge entry, 7.
	code, out, errs = runCLI(t, "audit", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "audit trail OK: 3 entries (seq 5..7)") || !strings.Contains(out, "purged through seq 4") {
		t.Fatalf("verify after purge: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "audit", "export", "--data-dir", dir, "--since", "2026-01-01")
	if code != 0 || !strings.Contains(out, `"action":"audit.purge"`) || !strings.Contains(out, `"reason":"deleted=4 through_seq=4 anchor=`) {
		t.Fatalf("the purge is not in the trail: %q", out)
	}
}

func TestAuditUsage(t *testing.T) {
	if code, _, errs := runCLI(t, "audit"); code == 0 || !strings.Contains(errs, "eimis-hub audit verify") {
		t.Fatalf("no command: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "audit", "rewrite"); code == 0 || !strings.Contains(errs, `unknown command "rewrite"`) {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, out, _ := runCLI(t, "audit", "help"); code != 0 || !strings.Contains(out, "eimis-hub audit purge --before T") {
		t.Fatalf("help: %d %q", code, out)
	}
}
