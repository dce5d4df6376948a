package directory

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// fold lower-cases s, strips diacritics and turns every run of characters that
// are neither letters nor digits into one space, trimmed at both ends.
// Header matching and name search both compare folded text, so "Libellé
// commune (coord. Structure)" meets "libelle commune coord structure" and a
// user typing "helene" finds "HÉLÈNE".
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	pendingSpace := false
	put := func(r rune) {
		if pendingSpace && b.Len() > 0 {
			b.WriteByte(' ')
		}
		pendingSpace = false
		b.WriteRune(r)
	}
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			c := byte(r)
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
				put(r)
			case c >= 'A' && c <= 'Z':
				put(r + 'a' - 'A')
			default:
				pendingSpace = true
			}
		case r == 'œ' || r == 'Œ':
			put('o')
			put('e')
		case r == 'æ' || r == 'Æ':
			put('a')
			put('e')
		case r == 'ß':
			put('s')
			put('s')
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			// NFD splits "é" into "e" + combining acute; keeping only the
			// non-mark runes removes the accent.
			for _, d := range norm.NFD.String(string(r)) {
				if !unicode.Is(unicode.Mn, d) {
					put(unicode.ToLower(d))
				}
			}
		case unicode.Is(unicode.Mn, r):
			// A combining mark in already-decomposed input: drop it.
		default:
			pendingSpace = true
		}
	}
	return b.String()
}

// foldCompact is fold without the separators, for header names whose
// punctuation and spacing vary between releases.
func foldCompact(s string) string {
	return strings.ReplaceAll(fold(s), " ", "")
}
