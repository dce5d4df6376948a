package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/directory/fhir/fhirtest"
)

// callCLI runs one subcommand function directly, as run() would once it
// dispatches to it.
func callCLI(t *testing.T, fn func([]string, io.Writer, io.Writer) error, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := fn(args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestDirectorySync(t *testing.T) {
	const key = "cli-test-esante-key-9876543210"
	recs := fhirtest.Generate(5, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	f := fhirtest.New(t, key, recs)
	dir := t.TempDir()
	syncArgs := func(extra ...string) []string {
		return append([]string{"--data-dir", dir, "--directory-fhir-url", f.BaseURL(), "--directory-fhir-api-key", key}, extra...)
	}
	stats := func() string {
		t.Helper()
		out, errs, err := callCLI(t, directoryStats, "--data-dir", dir)
		if err != nil {
			t.Fatalf("directory stats: %v %q", err, errs)
		}
		return out
	}
	steps := []struct {
		name      string
		change    func()
		args      []string
		wantOut   []string
		wantStats string
	}{
		{"first sync is full", nil, syncArgs(),
			[]string{"full sync: 5 practitioners, 0 inactivated, 1 pages, 0 retries, in "}, "generation 1, "},
		{"then incremental", func() { f.SetActive(recs[0].IDNat(), false) }, syncArgs(),
			[]string{"incremental sync (changes since ", "): 1 practitioners, 1 inactivated, 1 pages"}, "4 active, 1 inactive"},
		{"--full reads everything again", func() { f.Remove(recs[1].IDNat()) }, syncArgs("--full"),
			[]string{"full sync: 4 practitioners, 1 inactivated"}, "generation 2, "},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		out, errs, err := callCLI(t, directorySync, s.args...)
		if err != nil {
			t.Fatalf("%s: %v (stderr %q)", s.name, err, errs)
		}
		for _, w := range s.wantOut {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output %q lacks %q", s.name, out, w)
			}
		}
		if strings.Count(out, "\n") != 1 || strings.Contains(out+errs, key) {
			t.Errorf("%s: want one line without the API key, got %q %q", s.name, out, errs)
		}
		if got := stats(); !strings.Contains(got, s.wantStats) {
			t.Errorf("%s: directory stats %q lack %q", s.name, got, s.wantStats)
		}
	}
	if got := stats(); !strings.Contains(got, "3 active, 2 inactive") {
		t.Errorf("final directory stats %q, want 3 active and 2 inactive", got)
	}
}

func TestDirectorySyncErrors(t *testing.T) {
	const key = "cli-test-esante-key-9876543210"
	f := fhirtest.New(t, key, fhirtest.Generate(3, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)))
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no URL", []string{"--data-dir", dir, "--directory-fhir-api-key", key}, "directory_fhir_url is not set"},
		{"no API key", []string{"--data-dir", dir, "--directory-fhir-url", f.BaseURL()}, "directory_fhir_api_key is not set"},
		{"stray argument", []string{"--data-dir", dir, "--directory-fhir-url", f.BaseURL(), "--directory-fhir-api-key", key, "now"}, "unexpected argument"},
		// 401 is not retried, so this also shows a refused key fails fast.
		{"wrong API key", []string{"--data-dir", dir, "--directory-fhir-url", f.BaseURL(), "--directory-fhir-api-key", "wrong-key-0123456789"}, "HTTP 401"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("EIMIS_DIRECTORY_FHIR_URL", "")
			t.Setenv("EIMIS_DIRECTORY_FHIR_API_KEY", "")
			out, errs, err := callCLI(t, directorySync, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if all := err.Error() + out + errs; strings.Contains(all, key) || strings.Contains(all, "wrong-key-0123456789") {
				t.Errorf("API key echoed: %q", all)
			}
		})
	}
	// Nothing above may have touched the directory.
	out, _, err := callCLI(t, directoryStats, "--data-dir", dir)
	if err != nil || !strings.Contains(out, "no directory imported yet") {
		t.Fatalf("directory stats after failed syncs: %q, %v", out, err)
	}
}
