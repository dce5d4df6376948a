package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestReadmeSampleCount keeps the README's description of `make run` in
// step with the sample directory the command really loads.
func TestReadmeSampleCount(t *testing.T) {
	dir := t.TempDir()
	if code, out, errb := runCLI(t, "sample", "--data-dir", dir); code != 0 {
		t.Fatalf("sample: %s%s", out, errb)
	}
	code, out, errb := runCLI(t, "directory", "stats", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("directory stats: %s", errb)
	}
	var gen, active, inactive int
	var when string
	if _, err := fmt.Sscanf(out, "generation %d, imported %s %d active, %d inactive", &gen, &when, &active, &inactive); err != nil {
		t.Fatalf("parsing %q: %v", out, err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("(%d practitioners, %s of\nthem no longer registered)", active+inactive, map[int]string{1: "one", 2: "two", 3: "three"}[inactive])
	if !strings.Contains(string(readme), want) {
		t.Fatalf("README does not say %q: the sample directory has %d active and %d inactive practitioners", want, active, inactive)
	}
}
