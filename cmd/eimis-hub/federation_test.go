package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/federation/trustlist"
)

// authority-keygen prints the public key and nothing else; sign turns the
// YAML into a JWS that verifies with that key, and nothing else's.
func TestFederationKeygenSignRoundTrip(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "authority.key")
	code, out, errs := runCLI(t, "federation", "authority-keygen", "--out", keyFile)
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	pubValue := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(pubValue, "ed25519:") {
		t.Fatalf("stdout is not just the public key: %q", out)
	}
	pub, err := trustlist.ParsePublicKey(pubValue)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	// Never overwritten.
	if code, _, _ := runCLI(t, "federation", "authority-keygen", "--out", keyFile); code == 0 {
		t.Fatal("keygen overwrote an existing key")
	}

	src := filepath.Join(dir, "list.yaml")
	expires := time.Now().Add(72 * time.Hour).UTC().Format(time.RFC3339)
	os.WriteFile(src, []byte("expires: "+expires+"\nservers:\n"+
		"  - name: matrix.vendor.test\n    operator: vendor\n    status: active\n"+
		"  - name: 127.0.0.1:8448\n    operator: lab\n    status: suspended\n    users: server_vouched\n"), 0o600)
	jws := filepath.Join(dir, "list.jws")
	if code, _, errs := runCLI(t, "federation", "sign", "--key", keyFile, "--in", src, "--out", jws); code != 0 {
		t.Fatalf("sign: %d %s", code, errs)
	}
	data, err := os.ReadFile(jws)
	if err != nil {
		t.Fatal(err)
	}
	l, err := trustlist.Verify(data, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Servers) != 2 || l.Servers[0].Users != trustlist.Directory || l.Servers[1].Status != trustlist.Suspended || l.Version == 0 {
		t.Fatalf("list: %+v", l)
	}

	// A bad list is refused with its line, and nothing is written.
	os.WriteFile(src, []byte("expires: "+expires+"\nservers:\n  - {name: a.test, operator: x, status: maybe}\n"), 0o600)
	bad := filepath.Join(dir, "bad.jws")
	code, _, errs = runCLI(t, "federation", "sign", "--key", keyFile, "--in", src, "--out", bad)
	if code == 0 || !strings.Contains(errs, "line 3") {
		t.Fatalf("bad list: %d %q", code, errs)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Fatal("a refused list was written")
	}
}
