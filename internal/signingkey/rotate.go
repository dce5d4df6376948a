package signingkey

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// OldKey is a retired signing key: only its public half is kept, so other
// servers can still verify events and requests it signed. It is published
// in /_matrix/key/v2/server as old_verify_keys.
type OldKey struct {
	ID     string
	Public ed25519.PublicKey
	// Expired is when the key stopped being used (expired_ts).
	Expired time.Time
}

// PublicBase64 is the public key as published (unpadded base64).
func (k OldKey) PublicBase64() string { return base64.RawStdEncoding.EncodeToString(k.Public) }

// OldKeysPath is the file holding the retired keys of the key at path:
// one line "ed25519 <version> <base64 public key> <expired_ts in ms>" per
// key, Synapse's old_signing_keys in a file of their own.
func OldKeysPath(path string) string { return path + ".old" }

// ReadOld returns the retired keys of the key at path, oldest first; none
// when the file does not exist.
func ReadOld(path string) ([]OldKey, error) {
	data, err := os.ReadFile(OldKeysPath(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading old signing keys: %w", err)
	}
	var out []OldKey
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		k, err := parseOld(f)
		if err != nil {
			return nil, fmt.Errorf("old signing keys %s line %d: %w", OldKeysPath(path), i+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

func parseOld(f []string) (OldKey, error) {
	if len(f) != 4 || f[0] != Algorithm || !validVersion(f[1]) {
		return OldKey{}, fmt.Errorf("%w: want \"ed25519 <version> <base64 public key> <expired_ts>\"", ErrMalformed)
	}
	pub, err := decodeBase64(f[2])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return OldKey{}, fmt.Errorf("%w: bad public key", ErrMalformed)
	}
	ts, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || ts <= 0 {
		return OldKey{}, fmt.Errorf("%w: bad expired_ts", ErrMalformed)
	}
	return OldKey{ID: Algorithm + ":" + f[1], Public: pub, Expired: time.UnixMilli(ts)}, nil
}

// Rotate replaces the key at path with a new one and appends the current
// key's public half to OldKeysPath(path), expired at now. The old key is
// recorded before the new one replaces it, so a crash in between leaves
// the hub signing with the old key, never with a key nobody can verify.
// Every instance must be restarted to sign with the new key.
func Rotate(path string, now time.Time) (newKey Key, old OldKey, err error) {
	cur, err := Read(path)
	if err != nil {
		return Key{}, OldKey{}, err
	}
	olds, err := ReadOld(path)
	if err != nil {
		return Key{}, OldKey{}, err
	}
	for {
		if newKey, err = Generate(); err != nil {
			return Key{}, OldKey{}, err
		}
		if newKey.ID != cur.ID && !hasID(olds, newKey.ID) {
			break // a version must never be reused
		}
	}
	old = OldKey{ID: cur.ID, Public: cur.Public(), Expired: now}
	var b strings.Builder
	for _, k := range append(olds, old) {
		fmt.Fprintf(&b, "%s %s %s %d\n", Algorithm, strings.TrimPrefix(k.ID, Algorithm+":"), k.PublicBase64(), k.Expired.UnixMilli())
	}
	if err := replaceFile(OldKeysPath(path), []byte(b.String())); err != nil {
		return Key{}, OldKey{}, fmt.Errorf("recording the old signing key: %w", err)
	}
	data, err := Encode(newKey)
	if err != nil {
		return Key{}, OldKey{}, err
	}
	if err := replaceFile(path, data); err != nil {
		return Key{}, OldKey{}, fmt.Errorf("writing the new signing key: %w", err)
	}
	return newKey, old, nil
}

func hasID(keys []OldKey, id string) bool {
	for _, k := range keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

// replaceFile writes data to path atomically (temporary file, fsync,
// rename), mode 0600.
func replaceFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}
