package identity

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"testing"
)

func TestSharedSecret(t *testing.T) {
	if NewSharedSecretRegistrar("") != nil {
		t.Fatal("empty secret must disable registration")
	}
	r := NewSharedSecretRegistrar("s3cret-s3cret-s3cret")
	mac := func(nonce, user, pw, kind string) string {
		m := hmac.New(sha1.New, []byte("s3cret-s3cret-s3cret"))
		m.Write([]byte(nonce + "\x00" + user + "\x00" + pw + "\x00" + kind))
		return hex.EncodeToString(m.Sum(nil))
	}
	n := r.Nonce()
	if err := r.Verify(n, "alice", "pw", false, mac(n, "alice", "pw", "notadmin")); err != nil {
		t.Fatalf("valid MAC refused: %v", err)
	}
	if err := r.Verify(n, "alice", "pw", false, mac(n, "alice", "pw", "notadmin")); !errors.Is(err, ErrBadNonce) {
		t.Fatalf("nonce reuse: got %v", err)
	}
	n = r.Nonce()
	if err := r.Verify(n, "alice", "pw", true, mac(n, "alice", "pw", "notadmin")); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("admin flag not covered by the MAC: got %v", err)
	}
	n = r.Nonce()
	if err := r.Verify(n, "alice", "pw", true, mac(n, "alice", "pw", "admin")); err != nil {
		t.Fatalf("valid admin MAC refused: %v", err)
	}
	if err := r.Verify("made-up", "alice", "pw", false, "00"); !errors.Is(err, ErrBadNonce) {
		t.Fatalf("unknown nonce: got %v", err)
	}
	n = r.Nonce()
	if err := r.Verify(n, "alice", "pw", false, "not hex"); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("malformed MAC: got %v", err)
	}
}

func TestValidateLocalpart(t *testing.T) {
	for _, ok := range []string{"alice", "a.b-c_d=e/f+g", "810101234567"} {
		if err := ValidateLocalpart(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Alice", "a b", "a:b", "é", string(make([]byte, 201))} {
		if err := ValidateLocalpart(bad); !errors.Is(err, ErrInvalidLocalpart) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRandomString(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := RandomString(16)
		if len(s) != 16 || seen[s] {
			t.Fatalf("bad or repeated random string %q", s)
		}
		seen[s] = true
	}
}
