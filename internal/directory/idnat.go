package directory

import (
	"errors"
	"fmt"
)

// IDKind tells which register a national identifier (idNat) comes from.
type IDKind uint8

const (
	// KindUnknown is returned together with an error.
	KindUnknown IDKind = iota
	// KindRPPS is an idNat "8" + 11-digit RPPS number.
	KindRPPS
	// KindADELI is an idNat "0" + 9-digit ADELI number; ADELI is being retired
	// but the extract still carries such rows.
	KindADELI
)

func (k IDKind) String() string {
	switch k {
	case KindRPPS:
		return "RPPS"
	case KindADELI:
		return "ADELI"
	default:
		return "unknown"
	}
}

// Identifier prefixes, as they appear both in "Type d'identifiant PP" and as
// the first digit of the idNat.
const (
	prefixRPPS  = "8"
	prefixADELI = "0"
)

// ErrInvalidIDNat is wrapped by every ParseIDNat error, so callers can branch
// on "malformed identifier" without parsing messages.
var ErrInvalidIDNat = errors.New("directory: invalid idNat")

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// luhnValid runs the Luhn check over every digit, the last one being the
// check digit. s must be all digits.
func luhnValid(s string) bool {
	sum := 0
	double := false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// ValidRPPS reports whether s is an 11-digit RPPS number whose last digit is a
// correct Luhn check digit.
func ValidRPPS(s string) bool {
	return len(s) == 11 && allDigits(s) && luhnValid(s)
}

// validADELI only checks the shape: the ADELI check-key algorithm is not
// published in the material we rely on, and rejecting real numbers would be
// worse than accepting a mistyped one in a register that is being retired.
func validADELI(s string) bool {
	return len(s) == 9 && allDigits(s)
}

// IDNatFromRPPS returns the national identifier of an RPPS number. It does not
// validate: callers that hold untrusted input use ValidRPPS or ParseIDNat.
func IDNatFromRPPS(rpps string) string {
	return prefixRPPS + rpps
}

// ParseIDNat splits a national identifier into its register and local number,
// checking the RPPS Luhn digit. Errors wrap ErrInvalidIDNat.
func ParseIDNat(s string) (kind IDKind, local string, err error) {
	if s == "" {
		return KindUnknown, "", fmt.Errorf("%w: empty", ErrInvalidIDNat)
	}
	switch s[:1] {
	case prefixRPPS:
		local = s[1:]
		if !ValidRPPS(local) {
			return KindUnknown, "", fmt.Errorf("%w: %q is not 8 + a valid 11-digit RPPS", ErrInvalidIDNat, s)
		}
		return KindRPPS, local, nil
	case prefixADELI:
		local = s[1:]
		if !validADELI(local) {
			return KindUnknown, "", fmt.Errorf("%w: %q is not 0 + a 9-digit ADELI", ErrInvalidIDNat, s)
		}
		return KindADELI, local, nil
	default:
		return KindUnknown, "", fmt.Errorf("%w: %q has unknown prefix %q", ErrInvalidIDNat, s, s[:1])
	}
}
