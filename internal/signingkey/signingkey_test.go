package signingkey

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The seed and public key of RFC 8032 §7.1 test 1, so the expected public
// key comes from outside this package rather than from the code under test.
const (
	rfcSeedBase64   = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
	rfcPublicBase64 = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfcPublicHex    = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
)

func TestParseSynapseLine(t *testing.T) {
	// Exactly what Synapse's generate_config writes: no padding, newline.
	k, err := Parse([]byte("ed25519 a_Xk9Q " + rfcSeedBase64 + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != "ed25519:a_Xk9Q" || k.Version() != "a_Xk9Q" {
		t.Errorf("ID = %q, version %q", k.ID, k.Version())
	}
	if got := hex.EncodeToString(k.Public()); got != rfcPublicHex {
		t.Errorf("public key = %s, want %s", got, rfcPublicHex)
	}
	if k.PublicBase64() != rfcPublicBase64 {
		t.Errorf("PublicBase64 = %s, want %s", k.PublicBase64(), rfcPublicBase64)
	}
	// The key must actually sign: RFC 8032 test 1 signs the empty message.
	const wantSig = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155" +
		"5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
	if got := hex.EncodeToString(ed25519.Sign(k.Private, nil)); got != wantSig {
		t.Errorf("signature = %s, want %s", got, wantSig)
	}

	out, err := Encode(k)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ed25519 a_Xk9Q " + rfcSeedBase64 + "\n"; string(out) != want {
		t.Errorf("Encode = %q, want %q", out, want)
	}
}

// Variants Synapse's lenient reader accepts must load to the same key.
func TestParseTolerates(t *testing.T) {
	for name, content := range map[string]string{
		"padded":           "ed25519 a_1 " + rfcSeedBase64 + "=\n",
		"url-safe":         "ed25519 a_1 nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
		"no newline":       "ed25519 a_1 " + rfcSeedBase64,
		"crlf and spaces":  "  ed25519\ta_1   " + rfcSeedBase64 + "\r\n",
		"blank lines":      "\n\ned25519 a_1 " + rfcSeedBase64 + "\n\n",
		"second key after": "ed25519 a_1 " + rfcSeedBase64 + "\ned25519 old " + strings.Repeat("A", 43) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			k, err := Parse([]byte(content))
			if err != nil {
				t.Fatal(err)
			}
			if k.ID != "ed25519:a_1" || k.PublicBase64() != rfcPublicBase64 {
				t.Errorf("got %s / %s", k.ID, k.PublicBase64())
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "no key"},
		{"only blank", "\n  \n", "no key"},
		{"two fields", "ed25519 " + rfcSeedBase64, "want 3"},
		{"four fields", "ed25519 a_1 " + rfcSeedBase64 + " extra", "want 3"},
		{"other algorithm", "curve25519 a_1 " + rfcSeedBase64, `algorithm "curve25519"`},
		{"bad version", "ed25519 a-1 " + rfcSeedBase64, `key version "a-1"`},
		{"not base64", "ed25519 a_1 not*base64!", "not valid base64"},
		{"short seed", "ed25519 a_1 AAAA", "seed is 3 bytes"},
		{"full private key", "ed25519 a_1 " + strings.Repeat("A", 86), "seed is 64 bytes"},
		{"bad second line", "ed25519 a_1 " + rfcSeedBase64 + "\ngarbage", "line 2"},
		{"pem", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.content))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("want ErrMalformed, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if strings.Contains(err.Error(), rfcSeedBase64) {
				t.Errorf("error leaks the seed: %v", err)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	idPattern := regexp.MustCompile(`^ed25519:a_[A-Za-z0-9]{4}$`)
	seen := map[string]bool{}
	for range 20 {
		k, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !idPattern.MatchString(k.ID) {
			t.Errorf("ID %q does not look like ed25519:a_XXXX", k.ID)
		}
		if len(k.Private) != ed25519.PrivateKeySize || len(k.Public()) != ed25519.PublicKeySize {
			t.Errorf("bad key sizes %d/%d", len(k.Private), len(k.Public()))
		}
		if seen[k.PublicBase64()] {
			t.Errorf("repeated key %s", k.PublicBase64())
		}
		seen[k.PublicBase64()] = true
		if strings.HasSuffix(k.PublicBase64(), "=") {
			t.Errorf("PublicBase64 must be unpadded: %s", k.PublicBase64())
		}
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "signing.key")
	if err := Write(path, k); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != k.ID || !got.Private.Equal(k.Private) {
		t.Errorf("round trip changed the key: %s -> %s", k.ID, got.ID)
	}

	data, _ := os.ReadFile(path)
	if !regexp.MustCompile(`^ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}\n$`).Match(data) {
		t.Errorf("file is not in Synapse format: %q", data)
	}
	if runtime.GOOS != "windows" {
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", st.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestWriteRefusesToOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	const original = "ed25519 a_1 " + rfcSeedBase64 + "\n"
	if err := os.WriteFile(path, []byte(original), 0o600); err != nil {
		t.Fatal(err)
	}
	k, _ := Generate()
	err := Write(path, k)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("want fs.ErrExist, got %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != original {
		t.Errorf("existing key was modified: %q", data)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	// The fallback path must give the same guarantee.
	if err := writeExclusive(path, []byte("x")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("writeExclusive: want fs.ErrExist, got %v", err)
	}
}

// writeExclusive is only reached on filesystems without hard links, so
// exercise its success path directly.
func TestWriteExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	k, _ := Generate()
	data, err := Encode(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeExclusive(path, data); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil || !got.Private.Equal(k.Private) {
		t.Errorf("Read after writeExclusive: %v", err)
	}
	if runtime.GOOS != "windows" {
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", st.Mode().Perm())
		}
	}
}

func TestWriteRejectsInvalidKeys(t *testing.T) {
	good, _ := Generate()
	tampered := Key{ID: good.ID, Private: append(ed25519.PrivateKey(nil), good.Private...)}
	tampered.Private[40] ^= 1
	for name, k := range map[string]Key{
		"no algorithm":    {ID: "a_1", Private: good.Private},
		"wrong algorithm": {ID: "curve25519:a_1", Private: good.Private},
		"bad version":     {ID: "ed25519:a.1", Private: good.Private},
		"no private key":  {ID: good.ID},
		"mismatched":      tampered,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "signing.key")
			if err := Write(path, k); !errors.Is(err, ErrMalformed) {
				t.Errorf("want ErrMalformed, got %v", err)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a file was written for an invalid key")
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Read(filepath.Join(dir, "missing.key"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: want fs.ErrNotExist, got %v", err)
	}
	path := filepath.Join(dir, "bad.key")
	os.WriteFile(path, []byte("ed25519 a_1\n"), 0o600)
	_, err = Read(path)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("malformed file: want ErrMalformed naming the file and line, got %v", err)
	}
}

func TestLoadOrGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "data", "signing.key")
	k1, generated, err := LoadOrGenerate(path)
	if err != nil || !generated {
		t.Fatalf("first call: generated=%v err=%v", generated, err)
	}
	if runtime.GOOS != "windows" {
		if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
			t.Errorf("parent dir mode = %v, want 0700", st.Mode().Perm())
		}
	}
	k2, generated, err := LoadOrGenerate(path)
	if err != nil || generated {
		t.Fatalf("second call: generated=%v err=%v", generated, err)
	}
	if k1.ID != k2.ID || !k1.Private.Equal(k2.Private) {
		t.Errorf("second call returned a different key")
	}

	// A damaged key must stop startup, not be replaced.
	bad := filepath.Join(t.TempDir(), "signing.key")
	os.WriteFile(bad, []byte("garbage\n"), 0o600)
	if _, _, err := LoadOrGenerate(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("malformed: want ErrMalformed, got %v", err)
	}
	if data, _ := os.ReadFile(bad); string(data) != "garbage\n" {
		t.Errorf("malformed key file was replaced")
	}
}

// Several hub processes sharing a data directory must end up with one key.
func TestLoadOrGenerateConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	const n = 8
	keys := make([]Key, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], _, errs[i] = LoadOrGenerate(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if keys[i].ID != keys[0].ID || !keys[i].Private.Equal(keys[0].Private) {
			t.Errorf("caller %d got a different key", i)
		}
	}
}

func TestFormattingHidesPrivateKey(t *testing.T) {
	k, _ := Parse([]byte("ed25519 a_1 " + rfcSeedBase64))
	seedHex := hex.EncodeToString(k.Private.Seed())
	for _, verb := range []string{"%v", "%+v", "%s", "%#v"} {
		out := fmt.Sprintf(verb, k)
		if !strings.Contains(out, "ed25519:a_1") || strings.Contains(out, seedHex) || strings.Contains(out, "157") {
			t.Errorf("%s printed %q", verb, out)
		}
	}
}
