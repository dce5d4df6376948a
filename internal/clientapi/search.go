package clientapi

import (
	"strings"
	"unicode"
)

// MaxSearchTermRunes bounds a user directory search term. A name,
// profession and city together are far shorter; a longer term is refused
// (400 M_INVALID_PARAM) rather than cut, so a client never gets results
// for a search it did not ask for.
const MaxSearchTermRunes = 256

// searchTerm normalises a search term: control characters (a NUL is not
// even storable in PostgreSQL text) become spaces, blanks are collapsed,
// a leading "@" is dropped and a full user ID searches by its localpart.
func searchTerm(raw string) string {
	t := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, raw)
	t = strings.Join(strings.Fields(t), " ")
	t = strings.TrimSpace(strings.TrimPrefix(t, "@"))
	if lp, _, ok := strings.Cut(t, ":"); ok {
		t = strings.TrimSpace(lp)
	}
	return t
}
