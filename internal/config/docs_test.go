package config

import (
	"os"
	"strings"
	"testing"
)

// TestConfigurationDocIsCurrent fails when docs/configuration.md does not
// document every setting as the code defines it: run
// `go generate ./internal/config`.
func TestConfigurationDocIsCurrent(t *testing.T) {
	got, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != Markdown() {
		t.Fatal("docs/configuration.md is stale: run go generate ./internal/config")
	}
	for _, s := range settings {
		if !strings.Contains(string(got), "| `"+s.key+"` |") {
			t.Errorf("docs/configuration.md lacks %s", s.key)
		}
	}
}
