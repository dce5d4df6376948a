package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// root is the module root, seen from this package's directory.
const root = "../../.."

// TestGeneratedFilesUpToDate regenerates every file into a temporary
// module root and compares it with the committed one, so a change to
// schemas/codes.json without `go generate ./internal/codes` fails here.
func TestGeneratedFilesUpToDate(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, DataFile))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmp, "schemas"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, DataFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(tmp); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{outCodes, outPolicy, outOperators, outGateway, outSDK, outDocs} {
		want, err := os.ReadFile(filepath.Join(tmp, name))
		if err != nil {
			t.Fatalf("%s was not generated: %v", name, err)
		}
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `go generate ./internal/codes`", name)
		}
	}
}

// TestAppendOnly: codes and their Go identifiers are never removed,
// renamed or moved; new ones go at the end of the table and of
// testdata/golden.txt.
func TestAppendOnly(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, DataFile))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/golden.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var golden [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			golden = append(golden, strings.Fields(line))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for i, g := range golden {
		if i >= len(tab.Codes) {
			t.Fatalf("%s was removed from the table (codes are append-only)", g[0])
		}
		e := tab.Codes[i]
		if e.Code != g[0] {
			t.Fatalf("entry %d is %s, golden list says %s: codes are never removed, renamed or moved", i, e.Code, g[0])
		}
		for _, ident := range g[1:] {
			pkg, name, _ := strings.Cut(ident, ".")
			if e.Go[pkg] != name {
				t.Errorf("%s: %s was renamed or removed (now %q)", e.Code, ident, e.Go[pkg])
			}
		}
	}
	for _, e := range tab.Codes[len(golden):] {
		t.Errorf("%s is new: append it to testdata/golden.txt", e.Code)
	}
}

// valid is a table the checks accept; each case below breaks one rule.
const valid = `{"groups": [{"id": "trust", "title": "Trust"}, {"id": "protocol", "title": "Protocol"}],
 "codes": [
  {"code": "EIMIS_A", "group": "trust", "http_status": 403, "errcode": "M_FORBIDDEN",
   "go": {"policy": "A", "gateway": "CodeA", "sdk": "ErrA"}, "description": "a",
   "message": {"en": "%s is refused", "fr": "%s est refusé"},
   "bridge_message": {"en": "refused", "fr": "refusé"}},
  {"code": "EIMIS_B", "group": "protocol", "http_status": 400, "errcode": "M_BAD_JSON", "refusal": false,
   "go": {"gateway": "CodeB"}, "description": "b",
   "message": {"en": "bad", "fr": "mauvais"}}
 ]}`

func TestChecks(t *testing.T) {
	if _, err := Generate([]byte(valid)); err != nil {
		t.Fatalf("the valid table is refused: %v", err)
	}
	cases := []struct {
		name, from, to, want string
	}{
		{"duplicate code", `"EIMIS_B"`, `"EIMIS_A"`, "listed twice"},
		{"malformed code", `"EIMIS_B"`, `"eimis_b"`, "upper-case"},
		{"unknown group", `"group": "protocol"`, `"group": "nope"`, "unknown group"},
		{"not an error status", `"http_status": 400`, `"http_status": 200`, "not an error status"},
		{"bad errcode", `"M_BAD_JSON"`, `"FORBIDDEN"`, "not a Matrix errcode"},
		{"no French", `"fr": "mauvais"`, `"fr": ""`, "French"},
		{"subject missing", `"%s is refused"`, `"refused"`, "placeholder"},
		{"French placeholder differs", `"%s est refusé"`, `"%.0s est refusé"`, "same placeholder"},
		{"stray verb", `"bad"`, `"bad %d"`, "placeholder"},
		{"subject in a bridge text", `"en": "refused"`, `"en": "%s refused"`, "placeholder"},
		{"gateway text without bridge_message", `,
   "bridge_message": {"en": "refused", "fr": "refusé"}`, ``, "give a bridge_message"},
		{"duplicate identifier", `"CodeB"`, `"CodeA"`, "already names"},
		{"unexported identifier", `"ErrA"`, `"errA"`, "exported Go identifier"},
		{"unknown package", `"go": {"gateway": "CodeB"}`, `"go": {"rooms": "CodeB"}`, "unknown package"},
		{"both policy and operators", `"policy": "A"`, `"policy": "A", "operators": "A"`, "not both"},
		{"unknown field", `"refusal": false`, `"refused": false`, "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(valid, c.from, c.to, 1)
			if bad == valid {
				t.Fatalf("%q is not in the valid table", c.from)
			}
			_, err := Generate([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error about %q", err, c.want)
			}
		})
	}
}

// TestOutputs checks what the valid table generates: the subject-free
// text for the gateway, refusals, and the SDK value.
func TestOutputs(t *testing.T) {
	files, err := Generate([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, want string }{
		{outPolicy, `A: "%s is refused"`},
		{outGateway, `CodeA: "refused"`},
		{outGateway, `"EIMIS_B": true`},
		{outSDK, `ErrA = &Error{Code: "EIMIS_A"}`},
		{outCodes, `FR: "%s est refusé"`},
		{outDocs, "| `EIMIS_B` | 400 | `M_BAD_JSON` | no | b |"},
	} {
		if !strings.Contains(string(files[c.file]), c.want) {
			t.Errorf("%s lacks %q:\n%s", c.file, c.want, files[c.file])
		}
	}
	if strings.Contains(string(files[outGateway]), `"EIMIS_A": true`) {
		t.Error("a refusal is listed among notRefusals")
	}
	if strings.Contains(string(files[outOperators]), "EIMIS_") {
		t.Error("operators got a code it does not name")
	}
}
