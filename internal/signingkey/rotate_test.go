package signingkey

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRotateKeepsOldVerifyKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	first, _, err := LoadOrGenerate(path)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("signed before the rotation")
	sig := ed25519.Sign(first.Private, msg)

	t1 := time.UnixMilli(1_700_000_000_000)
	second, old, err := Rotate(path, t1)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if second.ID == first.ID || old.ID != first.ID || !old.Expired.Equal(t1) {
		t.Fatalf("rotate: new %s, old %s expired %v; want a new ID and the first key expired at %v", second.ID, old.ID, old.Expired, t1)
	}
	if cur, err := Read(path); err != nil || cur.ID != second.ID {
		t.Fatalf("key file holds %v (%v), want %s", cur.ID, err, second.ID)
	}
	third, _, err := Rotate(path, t1.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	olds, err := ReadOld(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(olds) != 2 || olds[0].ID != first.ID || olds[1].ID != second.ID {
		t.Fatalf("old keys %v, want [%s %s]", olds, first.ID, second.ID)
	}
	if !ed25519.Verify(olds[0].Public, msg, sig) {
		t.Fatal("the kept public key does not verify what the old key signed")
	}
	if third.ID == first.ID || third.ID == second.ID {
		t.Fatal("a key version was reused")
	}
	b, _ := os.ReadFile(OldKeysPath(path))
	for _, k := range []Key{first, second} {
		if contains(b, k.Private.Seed()) {
			t.Fatal("the old keys file holds a private seed")
		}
	}
}

func TestReadOldRejectsDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	if err := os.WriteFile(OldKeysPath(path), []byte("ed25519 a_x notbase64!! 12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOld(path); err == nil {
		t.Fatal("a damaged old keys file was accepted")
	}
	if ks, err := ReadOld(filepath.Join(t.TempDir(), "none")); err != nil || ks != nil {
		t.Fatalf("missing file: %v, %v", ks, err)
	}
}

func contains(haystack, needle []byte) bool {
	for i := 0; i+len(needle) <= len(haystack); i++ {
		if string(haystack[i:i+len(needle)]) == string(needle) {
			return true
		}
	}
	return false
}
