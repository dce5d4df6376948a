package consent

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
)

// Link codes are 8 characters of Crockford's base32 (40 bits from
// crypto/rand), shown as two groups of four: XXXX-XXXX. The alphabet has
// no I, L, O or U, and reading is forgiving (lower case, I and L as 1, O
// as 0, any dashes or spaces), so a code read aloud or copied from a
// phone screen works. 40 bits is enough because a code lives minutes, is
// used once, works only for the practitioner it was issued to, and an
// app gets a handful of wrong tries per window (attempts.go).
const (
	codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	codeChars    = 8
	codeGroup    = 4
)

// newCode returns a fresh code in its display form.
func newCode() string {
	var b [5]byte // 40 bits = 8 × 5 bits
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("consent: no randomness: %v", err)) // crypto/rand never fails on supported systems
	}
	v := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	out := make([]byte, 0, codeChars+1)
	for i := codeChars - 1; i >= 0; i-- {
		if len(out) == codeGroup {
			out = append(out, '-')
		}
		out = append(out, codeAlphabet[(v>>(5*uint(i)))&31])
	}
	return string(out)
}

// normalizeCode reads a code as typed; ok is false when it cannot be one.
func normalizeCode(s string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch r {
		case '-', ' ', '\t':
			continue
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if !strings.ContainsRune(codeAlphabet, r) || b.Len() == codeChars {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != codeChars {
		return "", false
	}
	return b.String(), true
}

// codeHash is how a code is stored: bound to the practitioner it was
// issued to, so it is found only when an app binds that practitioner.
func codeHash(userID, normalized string) []byte {
	h := sha256.New()
	h.Write([]byte("eimis-link-code-v1\x00"))
	h.Write([]byte(userID))
	h.Write([]byte{0})
	h.Write([]byte(normalized))
	return h.Sum(nil)
}
