package directory

import (
	"errors"
	"fmt"
	"testing"
)

// withCheckDigit completes 10 digits into a valid RPPS by computing the Luhn
// check digit directly (not by trial through ValidRPPS, so the test does not
// lean on the code under test).
func withCheckDigit(t testing.TB, first10 string) string {
	t.Helper()
	if len(first10) != 10 {
		t.Fatalf("withCheckDigit(%q): need 10 digits", first10)
	}
	sum := 0
	// With the check digit appended, the last of these ten digits sits in a
	// doubled position.
	for i := 0; i < 10; i++ {
		d := int(first10[9-i] - '0')
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return fmt.Sprintf("%s%d", first10, (10-sum%10)%10)
}

func TestValidRPPS(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"10001045367", true}, // public example row of the extract
		// The idNat example of the ANS documentation (RPPS 10102727017) does
		// not pass Luhn: it is an illustration, not a registered number.
		{"10102727017", false},
		{withCheckDigit(t, "1000000001"), true},
		{withCheckDigit(t, "1000123456"), true},
		{withCheckDigit(t, "1999999999"), true},
		{"10001045368", false}, // wrong check digit
		{"1000104536", false},  // 10 digits
		{"100010453670", false},
		{"1000104536a", false},
		{" 10001045367", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ValidRPPS(tt.in); got != tt.want {
			t.Errorf("ValidRPPS(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// Luhn catches every single-digit substitution: changing any one digit of a
// valid number must make it invalid.
func TestValidRPPSSingleDigitChange(t *testing.T) {
	for _, base := range []string{"1000000001", "1010272701", "1000904321", "1987654321"} {
		valid := withCheckDigit(t, base)
		if !ValidRPPS(valid) {
			t.Fatalf("%s should be valid", valid)
		}
		for pos := 0; pos < 11; pos++ {
			for d := byte('0'); d <= '9'; d++ {
				if valid[pos] == d {
					continue
				}
				b := []byte(valid)
				b[pos] = d
				if ValidRPPS(string(b)) {
					t.Errorf("%s (from %s, digit %d changed) passes the check", b, valid, pos)
				}
			}
		}
	}
}

func TestIDNatFromRPPS(t *testing.T) {
	if got := IDNatFromRPPS("10001045367"); got != "810001045367" {
		t.Errorf("IDNatFromRPPS = %q", got)
	}
}

func TestParseIDNat(t *testing.T) {
	valid := withCheckDigit(t, "1000000042")
	tests := []struct {
		in        string
		kind      IDKind
		local     string
		wantError bool
	}{
		{"810001045367", KindRPPS, "10001045367", false},
		{"8" + valid, KindRPPS, valid, false},
		{"0751234567", KindADELI, "751234567", false},
		{"810001045368", KindUnknown, "", true}, // Luhn
		{"81000104536", KindUnknown, "", true},  // too short
		{"075123456", KindUnknown, "", true},    // ADELI with 8 digits
		{"07512345678", KindUnknown, "", true},  // ADELI with 10 digits
		{"07512345a7", KindUnknown, "", true},
		{"310001045367", KindUnknown, "", true}, // unknown prefix
		{"", KindUnknown, "", true},
	}
	for _, tt := range tests {
		kind, local, err := ParseIDNat(tt.in)
		if (err != nil) != tt.wantError {
			t.Errorf("ParseIDNat(%q) error = %v, want error %v", tt.in, err, tt.wantError)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalidIDNat) {
			t.Errorf("ParseIDNat(%q) error %v does not wrap ErrInvalidIDNat", tt.in, err)
		}
		if kind != tt.kind || local != tt.local {
			t.Errorf("ParseIDNat(%q) = %v, %q; want %v, %q", tt.in, kind, local, tt.kind, tt.local)
		}
	}
}
