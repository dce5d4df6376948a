package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// registrationFile writes an appservice registration; extra lines are
// appended (namespaces).
func registrationFile(t *testing.T, id, asToken, sender, users string) string {
	t.Helper()
	body := "id: " + id + "\nurl: http://127.0.0.1:29318\nas_token: " + asToken +
		"\nhs_token: " + strings.Repeat("h", 40) + id + "\nsender_localpart: " + sender + "\n" +
		"namespaces:\n  users:\n" + users + "de.sorunome.msc2409.push_ephemeral: true\norg.matrix.msc3202: false\n"
	path := filepath.Join(t.TempDir(), id+".yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func exclusive(regex string) string {
	return "    - exclusive: true\n      regex: '" + regex + "'\n"
}

func TestAppserviceCLI(t *testing.T) {
	noDefaultStore(t)
	dir := t.TempDir()
	if code, _, errs := runCLI(t, "sample", "--data-dir", dir); code != 0 {
		t.Fatalf("sample: %s", errs)
	}
	as := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"appservice"}, args...)...)
	}
	const responsible = "810000000017" // a practitioner of the sample directory

	if code, out, errs := as("list", "--data-dir", dir); code != 0 || !strings.Contains(out, "no appservices") {
		t.Fatalf("empty list: %d %q %q", code, out, errs)
	}
	wa := registrationFile(t, "whatsapp", strings.Repeat("a", 40), "whatsappbot", exclusive(`^@whatsapp_.*:localhost$`))
	code, out, errs := as("add", "--data-dir", dir, "--responsible", responsible, "--name", "Pont WhatsApp", wa)
	if code != 0 || !strings.Contains(out, "added appservice whatsapp") || !strings.Contains(out, "puppets of practitioners") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if !strings.Contains(errs, "org.matrix.msc3202: not used by this hub") {
		t.Fatalf("unknown keys should be noted: %q", errs)
	}
	if code, out, _ := as("list", "--data-dir", dir); code != 0 || !strings.Contains(out, "whatsapp") ||
		!strings.Contains(out, "@whatsappbot:localhost") || !strings.Contains(out, responsible) || strings.Contains(out, strings.Repeat("a", 40)) {
		t.Fatalf("list: %d %q", code, out)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: 'x y'\nurl: ftp://x\nas_token: short\nnamespaces:\n  users:\n    - regex: '@8.*:localhost'\n      exclusive: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"no file", []string{"add", "--data-dir", dir, "--responsible", responsible}, []string{"registration FILE"}},
		{"no responsible", []string{"add", "--data-dir", dir, wa}, []string{"--responsible"}},
		{"invalid file, every field named", []string{"add", "--data-dir", dir, "--responsible", responsible, bad},
			[]string{"id: \"x y\"", "url: \"ftp://x\"", "as_token: too short", "hs_token: required", "sender_localpart: required", "namespaces.users[0].regex", "practitioner's own account"}},
		{"same id", []string{"add", "--data-dir", dir, "--responsible", responsible, wa}, []string{"already registered"}},
		{"overlapping exclusive namespace", []string{"add", "--data-dir", dir, "--responsible", responsible,
			registrationFile(t, "wa2", strings.Repeat("b", 40), "wa2bot", exclusive(`^@whatsapp_8.*:localhost$`))},
			[]string{"namespaces.users[0].regex", "overlaps", "appservice whatsapp"}},
		{"responsible not in the directory", []string{"add", "--data-dir", dir, "--responsible", "810000000314",
			registrationFile(t, "tg", strings.Repeat("c", 40), "tgbot", exclusive(`^@tg_.*:localhost$`))},
			[]string{"responsible", "not active"}},
		{"missing file", []string{"add", "--data-dir", dir, "--responsible", responsible, filepath.Join(dir, "nope.yaml")}, []string{"no such file"}},
		{"remove unknown", []string{"remove", "--data-dir", dir, "nobody"}, []string{`no appservice "nobody"`}},
		{"unknown command", []string{"frob"}, []string{"unknown command"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := as(c.args...)
			if code == 0 {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q does not mention %q", errs, w)
				}
			}
		})
	}

	if code, out, errs := as("remove", "--data-dir", dir, "whatsapp"); code != 0 || !strings.Contains(out, "removed appservice whatsapp") {
		t.Fatalf("remove: %d %q %q", code, out, errs)
	}
	if code, out, _ := as("list", "--data-dir", dir); code != 0 || !strings.Contains(out, "no appservices") {
		t.Fatalf("list after remove: %q", out)
	}
	// Removed, it can be added again (say with new tokens).
	if code, _, errs := as("add", "--data-dir", dir, "--responsible", responsible, "--name", "Pont WhatsApp", wa); code != 0 {
		t.Fatalf("add again: %s", errs)
	}
	code, out, errs = runCLI(t, "audit", "export", "--data-dir", dir, "--since", "2000-01-01")
	if code != 0 || !strings.Contains(out, "appservice.add") || !strings.Contains(out, "appservice.remove") {
		t.Fatalf("the CLI's changes are not in the audit trail: %d %q %q", code, out, errs)
	}
}
