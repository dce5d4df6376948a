// Package signingkey manages the hub's Matrix server signing key: the
// ed25519 key that signs events and federation requests and that other
// servers pin by key ID. Losing or silently replacing it breaks trust with
// every server that has seen the old one, so this package never overwrites
// an existing key file and refuses to guess at a damaged one.
//
// The file format is Synapse's, so a key can be moved between Synapse and
// the hub in either direction: one line
//
//	ed25519 <version> <unpadded standard base64 of the 32-byte seed>
//
// where the key ID is "ed25519:<version>".
package signingkey

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Algorithm is the only key algorithm Matrix defines for server keys.
const Algorithm = "ed25519"

// ErrMalformed is wrapped by every error about the content of a key file,
// as opposed to errors reaching it.
var ErrMalformed = errors.New("malformed signing key")

// Key is a server signing key with its Matrix key ID.
type Key struct {
	ID      string // "ed25519:a_AbCd"
	Private ed25519.PrivateKey
}

// Public returns the verification key, or nil if Private is not a valid
// ed25519 private key.
func (k Key) Public() ed25519.PublicKey {
	if len(k.Private) != ed25519.PrivateKeySize {
		return nil
	}
	return k.Private.Public().(ed25519.PublicKey)
}

// PublicBase64 is the public key as published in /_matrix/key/v2/server:
// unpadded standard base64, as the Matrix spec requires for all binary
// values in JSON.
func (k Key) PublicBase64() string {
	return base64.RawStdEncoding.EncodeToString(k.Public())
}

// Version is the part of the key ID after "ed25519:".
func (k Key) Version() string {
	_, v, _ := strings.Cut(k.ID, ":")
	return v
}

// String returns only the key ID so that logging a Key with %v or %s can
// never leak the private key.
func (k Key) String() string { return k.ID }

// GoString keeps %#v from leaking the private key too.
func (k Key) GoString() string { return fmt.Sprintf("signingkey.Key{ID: %q}", k.ID) }

// Generate creates a new key with a random version in Synapse's style
// ("a_" and four random characters). The version only has to be unique
// among this server's keys, so four characters are enough.
func Generate() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generating signing key: %w", err)
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	suffix := make([]byte, 4)
	for i := range suffix {
		suffix[i] = alphabet[randIndex(len(alphabet))]
	}
	return Key{ID: Algorithm + ":a_" + string(suffix), Private: priv}, nil
}

// randIndex draws uniformly from [0, n) by rejecting bytes from the
// incomplete last block, avoiding the bias of a plain modulo.
func randIndex(n int) int {
	limit := 256 - 256%n
	var b [1]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
		if int(b[0]) < limit {
			return int(b[0]) % n
		}
	}
}

// validVersion applies the Matrix key ID grammar: the part after the
// algorithm may only contain [a-zA-Z0-9_].
func validVersion(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// Encode renders k in the Synapse key file format, newline-terminated.
func Encode(k Key) ([]byte, error) {
	alg, version, ok := strings.Cut(k.ID, ":")
	if !ok || alg != Algorithm || !validVersion(version) {
		return nil, fmt.Errorf("%w: key ID %q is not ed25519:<[a-zA-Z0-9_]+>", ErrMalformed, k.ID)
	}
	if len(k.Private) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: private key is %d bytes, want %d", ErrMalformed, len(k.Private), ed25519.PrivateKeySize)
	}
	// Only the seed is stored; a private key whose public half does not
	// match its seed would come back from Read as a different key.
	seed := k.Private.Seed()
	if !bytes.Equal(ed25519.NewKeyFromSeed(seed), k.Private) {
		return nil, fmt.Errorf("%w: private key halves do not match", ErrMalformed)
	}
	line := fmt.Sprintf("%s %s %s\n", Algorithm, version, base64.RawStdEncoding.EncodeToString(seed))
	return []byte(line), nil
}

// Parse reads a key from the content of a key file. Synapse allows more
// than one key per file and signs with the first, so Parse returns the
// first key; every line must still be well-formed, because a damaged file
// deserves attention rather than partial use. Blank lines are ignored.
// Error messages never include key material.
func Parse(data []byte) (Key, error) {
	var first Key
	found := false
	for i, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		k, err := parseLine(fields)
		if err != nil {
			return Key{}, fmt.Errorf("line %d: %w", i+1, err)
		}
		if !found {
			first, found = k, true
		}
	}
	if !found {
		return Key{}, fmt.Errorf("%w: no key in file", ErrMalformed)
	}
	return first, nil
}

func parseLine(fields []string) (Key, error) {
	if len(fields) != 3 {
		return Key{}, fmt.Errorf("%w: want 3 space-separated fields \"ed25519 <version> <base64 seed>\", got %d", ErrMalformed, len(fields))
	}
	alg, version, encoded := fields[0], fields[1], fields[2]
	if alg != Algorithm {
		return Key{}, fmt.Errorf("%w: algorithm %q is not %s", ErrMalformed, alg, Algorithm)
	}
	if !validVersion(version) {
		return Key{}, fmt.Errorf("%w: key version %q may only contain letters, digits and _", ErrMalformed, version)
	}
	seed, err := decodeBase64(encoded)
	if err != nil {
		return Key{}, fmt.Errorf("%w: seed is not valid base64", ErrMalformed)
	}
	if len(seed) != ed25519.SeedSize {
		return Key{}, fmt.Errorf("%w: seed is %d bytes, want %d", ErrMalformed, len(seed), ed25519.SeedSize)
	}
	return Key{ID: Algorithm + ":" + version, Private: ed25519.NewKeyFromSeed(seed)}, nil
}

// decodeBase64 accepts padded and URL-safe variants as well: Synapse
// writes unpadded standard base64 but its reader is lenient, so keys
// produced by other tools load there and must load here too.
func decodeBase64(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{
		base64.RawStdEncoding, base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding,
	} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// Read loads the key file at path. A missing file yields an error matching
// fs.ErrNotExist; bad content one matching ErrMalformed.
func Read(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("reading signing key: %w", err)
	}
	k, err := Parse(data)
	if err != nil {
		return Key{}, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// Write stores k at path with mode 0600. It never replaces an existing
// file: if path exists the error matches fs.ErrExist. The key is written
// to a temporary file and hard-linked into place, so a crash leaves either
// no key file or a complete one — never a truncated file that would stop
// the hub from starting.
func Write(path string, k Key) error {
	data, err := Encode(k)
	if err != nil {
		return fmt.Errorf("writing signing key %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // CreateTemp uses mode 0600
	if err != nil {
		return fmt.Errorf("writing signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing signing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing signing key: %w", err)
	}

	// Unlike rename, link fails when the target exists, which is exactly
	// the no-overwrite guarantee, without a check-then-write race.
	err = os.Link(tmp.Name(), path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("refusing to overwrite signing key: %w", err)
	default:
		// Some filesystems (FUSE, certain network mounts) have no hard
		// links; exclusive create still refuses to overwrite.
		if err := writeExclusive(path, data); err != nil {
			return err
		}
	}
	syncDir(dir)
	return nil
}

func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("refusing to overwrite signing key: %w", err)
		}
		return fmt.Errorf("writing signing key: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The file is ours (O_EXCL), and a partial key is worse than none.
		os.Remove(path)
		return fmt.Errorf("writing signing key: %w", err)
	}
	return nil
}

// syncDir makes the new directory entry durable. Failure is ignored: not
// every platform can fsync a directory, and the file itself is synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// LoadOrGenerate reads the key at path, or on first start generates and
// writes one, creating the parent directory with mode 0700. generated
// reports whether a new key was made. A malformed existing file is an
// error, never a reason to replace it.
func LoadOrGenerate(path string) (k Key, generated bool, err error) {
	k, err = Read(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Key{}, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Key{}, false, fmt.Errorf("creating signing key directory: %w", err)
	}
	k, err = Generate()
	if err != nil {
		return Key{}, false, err
	}
	if err := Write(path, k); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process sharing the data directory got there
			// first; use its key so both sign with the same one.
			k, err = Read(path)
			return k, false, err
		}
		return Key{}, false, err
	}
	return k, true, nil
}
