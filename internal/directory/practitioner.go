package directory

import (
	"strings"
	"unicode"
)

// Practitioner is one person of the directory, with every activity the
// extract lists for them merged in.
type Practitioner struct {
	IDNat       string
	RPPS        string // empty for ADELI-only practitioners
	Civility    string // "Docteur", "Madame"… (libellé civilité d'exercice)
	LastName    string
	FirstName   string
	Professions []Profession // distinct, in order of first appearance
	Activities  []Activity   // distinct, in order of first appearance
	Active      bool
}

// Profession is a TRE_G15-ProfessionSante code and its label ("10",
// "Médecin").
type Profession struct {
	Code, Label string
}

// Activity is where a practitioner works, as listed on one extract row.
type Activity struct {
	FINESS, SIRET, StructureID, StructureName, PostalCode, City string
}

func (a Activity) empty() bool {
	return a == Activity{}
}

// DisplayName follows the EIMIS convention "First Last - Profession", using
// the first profession's label. Upper-case names from the extract are turned
// into their usual capitalisation, because shouting names in every room and
// search result is what users complained about.
func (p Practitioner) DisplayName() string {
	name := strings.TrimSpace(ProperName(p.FirstName, true) + " " + ProperName(p.LastName, p.FirstName == ""))
	if len(p.Professions) > 0 && p.Professions[0].Label != "" {
		if name == "" {
			return p.Professions[0].Label
		}
		return name + " - " + p.Professions[0].Label
	}
	return name
}

// particles stay lower-case inside a name ("Charles de Gaulle",
// "Jean d'Alembert") but are capitalised when they open it. "Le" and "La" are
// not in the list: "Le Gall", "de La Fontaine" keep their capital.
var particles = map[string]bool{
	"de": true, "du": true, "des": true, "d": true,
	"van": true, "von": true, "der": true, "den": true,
	"di": true, "da": true, "del": true, "della": true, "dos": true,
}

// ProperName capitalises a name written in upper case: "JEAN-PIERRE" →
// "Jean-Pierre", "D'ALEMBERT" → "d'Alembert" (or "D'Alembert" when leading is
// true, the name then opening the display name). Input that already has
// lower-case letters is trusted as written, apart from spacing.
func ProperName(s string, leading bool) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" || strings.IndexFunc(s, unicode.IsLower) >= 0 {
		return s
	}
	runes := []rune(strings.ToLower(s))
	out := make([]rune, 0, len(runes))
	first := true
	for i := 0; i < len(runes); {
		// A word runs until a separator; the separator is copied as is.
		j := i
		for j < len(runes) && !isNameSep(runes[j]) {
			j++
		}
		word := runes[i:j]
		if len(word) > 0 {
			lowerParticle := particles[string(word)] && !(first && leading) &&
				// "Di" or "Da" as a whole surname is not a particle.
				(j < len(runes))
			if !lowerParticle {
				word[0] = unicode.ToTitle(word[0])
			}
			out = append(out, word...)
			first = false
		}
		if j < len(runes) {
			out = append(out, runes[j])
		}
		i = j + 1
	}
	return string(out)
}

func isNameSep(r rune) bool {
	return r == ' ' || r == '-' || r == '\'' || r == '’'
}
