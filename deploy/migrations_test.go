package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// notRollingMarker, in a migration's Up part, declares that instances of
// the previous version cannot run on the migrated schema: upgrading across
// it needs every instance stopped (docs/operations.md#rolling-upgrades).
const notRollingMarker = "-- eimis: not-rolling"

// beforeTheRule are the migrations written before rolling upgrades were
// promised; 00009 rebuilds the txns table.
var beforeTheRule = map[string]bool{"00009_doors_txn_scope.sql": true}

var destructive = regexp.MustCompile(`(?im)^\s*(DROP\s+(TABLE|COLUMN|CONSTRAINT|VIEW)|ALTER\s+TABLE\s+\S+\s+(DROP|RENAME|ALTER\s+COLUMN)|.*\bRENAME\s+(TO|COLUMN)\b)`)

// TestMigrationsAreRolling keeps the rolling-upgrade promise: a migration's
// Up part only adds (tables, nullable or defaulted columns, indexes), so
// instances of the previous version keep working while others migrate. A
// migration that must drop or rename says so with notRollingMarker.
func TestMigrationsAreRolling(t *testing.T) {
	files, err := filepath.Glob("../schemas/migrations/*/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		up, _, _ := strings.Cut(string(b), "-- +goose Down")
		if beforeTheRule[filepath.Base(f)] || strings.Contains(up, notRollingMarker) {
			continue
		}
		var code []string
		for _, line := range strings.Split(up, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "--") {
				code = append(code, line)
			}
		}
		if m := destructive.FindString(strings.Join(code, "\n")); m != "" {
			t.Errorf("%s: %q breaks instances still on the previous version; make it additive, or mark it %q and document the stop", f, strings.TrimSpace(m), notRollingMarker)
		}
	}
}

func TestDestructivePattern(t *testing.T) {
	for sql, want := range map[string]bool{
		"DROP TABLE txns;":                                 true,
		"ALTER TABLE rooms DROP COLUMN topic;":             true,
		"ALTER TABLE txns_scoped RENAME TO txns;":          true,
		"ALTER TABLE events RENAME COLUMN a TO b;":         true,
		"ALTER TABLE events ALTER COLUMN a SET NOT NULL;":  true,
		"CREATE TABLE t (a INT);":                          false,
		"ALTER TABLE events ADD COLUMN retention BIGINT;":  false,
		"CREATE INDEX IF NOT EXISTS e_room ON events (r);": false,
		"DROP INDEX e_old;":                                false,
		"ALTER TABLE events ADD COLUMN x TEXT DEFAULT '';": false,
	} {
		if got := destructive.MatchString(sql); got != want {
			t.Errorf("%q: destructive = %v, want %v", sql, got, want)
		}
	}
}
