package directory

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Errors callers branch on.
var (
	// ErrTooManyBadRows aborts a read once more than ReadOptions.MaxBadRows
	// rows were rejected: a file that bad is more likely truncated or in a new
	// format than merely dirty, and importing the rest would deactivate
	// practitioners wrongly.
	ErrTooManyBadRows = errors.New("directory: too many bad rows in extract")
	// ErrMissingColumns means the header lacks columns the reader needs;
	// Report.MissingColumns names them.
	ErrMissingColumns = errors.New("directory: extract header lacks required columns")
	// ErrNoHeader means the input had no header line at all.
	ErrNoHeader = errors.New("directory: extract is empty (no header line)")
)

// ExtractColumns are the 52 column names of PS_LibreAcces_Personne_activite,
// in the order the published file uses. The reader does not depend on this
// order (it matches by name); writers of sample and test files do.
var ExtractColumns = []string{
	"Type d'identifiant PP", "Identifiant PP", "Identification nationale PP",
	"Code civilité d'exercice", "Libellé civilité d'exercice", "Code civilité",
	"Libellé civilité", "Nom d'exercice", "Prénom d'exercice", "Code profession",
	"Libellé profession", "Code catégorie professionnelle",
	"Libellé catégorie professionnelle", "Code type savoir-faire",
	"Libellé type savoir-faire", "Code savoir-faire", "Libellé savoir-faire",
	"Code mode exercice", "Libellé mode exercice", "Numéro SIRET site",
	"Numéro SIREN site", "Numéro FINESS site", "Numéro FINESS établissement juridique",
	"Identifiant technique de la structure", "Raison sociale site",
	"Enseigne commerciale site",
	"Complément destinataire (coord. structure)",
	"Complément point géographique (coord. structure)",
	"Numéro Voie (coord. structure)", "Indice répétition voie (coord. structure)",
	"Code type de voie (coord. structure)", "Libellé type de voie (coord. structure)",
	"Libellé Voie (coord. structure)", "Mention distribution (coord. structure)",
	"Bureau cedex (coord. structure)", "Code postal (coord. structure)",
	"Code commune (coord. structure)", "Libellé commune (coord. structure)",
	"Code pays (coord. structure)", "Libellé pays (coord. structure)",
	"Téléphone (coord. structure)", "Téléphone 2 (coord. structure)",
	"Télécopie (coord. structure)", "Adresse e-mail (coord. structure)",
	"Code Département (structure)", "Libellé Département (structure)",
	"Ancien identifiant de la structure", "Autorité d'enregistrement",
	"Code secteur d'activité", "Libellé secteur d'activité",
	"Code section tableau pharmaciens", "Libellé section tableau pharmaciens",
}

// The columns the reader uses, in the order of requiredColumns.
const (
	colIDType = iota
	colID
	colIDNat
	colCivility
	colLastName
	colFirstName
	colProfCode
	colProfLabel
	colFINESS
	colSIRET
	colStructID
	colStructName
	colPostal
	colCity
	numCols
)

var requiredColumns = [numCols]string{
	colIDType:     "Type d'identifiant PP",
	colID:         "Identifiant PP",
	colIDNat:      "Identification nationale PP",
	colCivility:   "Libellé civilité d'exercice",
	colLastName:   "Nom d'exercice",
	colFirstName:  "Prénom d'exercice",
	colProfCode:   "Code profession",
	colProfLabel:  "Libellé profession",
	colFINESS:     "Numéro FINESS site",
	colSIRET:      "Numéro SIRET site",
	colStructID:   "Identifiant technique de la structure",
	colStructName: "Raison sociale site",
	colPostal:     "Code postal (coord. structure)",
	colCity:       "Libellé commune (coord. structure)",
}

// Encodings reported in Report.Encoding.
const (
	EncodingUTF8        = "UTF-8"
	EncodingWindows1252 = "Windows-1252"
)

// ReadOptions tune ReadExtract.
type ReadOptions struct {
	// MaxBadRows aborts the read with ErrTooManyBadRows once exceeded;
	// 0 means unlimited.
	MaxBadRows int
	// AllowedProfessions keeps only rows whose profession code is a key set
	// to true; nil keeps every profession. Rows left out are counted in
	// Report.Filtered, not as bad rows.
	AllowedProfessions map[string]bool
	// MaxExamples caps Report.Examples; 0 means 20.
	MaxExamples int
	// MaxLineBytes caps one line; 0 means 1 MiB. A longer line aborts the
	// read, since it means the file is not the extract we know.
	MaxLineBytes int
}

// RowError is one rejected row.
type RowError struct {
	Line   int // 1-based, the header being line 1
	Reason string
}

func (e RowError) String() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// Report summarises one read.
type Report struct {
	Lines          int // lines read, header and blank lines included
	Rows           int // non-blank data lines
	People         int // practitioners emitted
	BadRows        int // rows rejected, all of them counted
	Filtered       int // valid rows left out by AllowedProfessions
	Examples       []RowError
	Encoding       string // EncodingUTF8 or EncodingWindows1252
	MissingColumns []string
}

// person is the practitioner being assembled from consecutive rows.
type person struct {
	key       string // idNat of the block, "" before the first valid row
	startLine int
	dup       bool // block of a person already emitted: every row is bad
	accepted  int  // rows merged into p
	p         Practitioner
}

type encState uint8

const (
	encUndecided encState = iota // only ASCII seen so far
	encUTF8
	encCP1252
)

// ReadExtract streams a PS_LibreAcces_Personne_activite extract and calls
// emit once per practitioner, with all their valid rows merged.
//
// Bad-row policy: a row is validated as a whole before anything of it is
// used, so a rejected row is never half-applied. A person with some bad rows
// is still emitted with their good rows: one garbled activity line should not
// lock a practitioner out of messaging, and the bad row is reported with its
// line number for the operator. A person whose every row is bad is not
// emitted.
//
// Rows of one person must be consecutive (they are in the published file).
// When a person already emitted shows up again later, those rows are reported
// as bad instead of emitting a second, partial record that would overwrite the
// first. Detecting this keeps one map entry (about 16 bytes) per person; apart
// from that set, memory is bounded by the current person and one line.
//
// Encoding: lines are taken as UTF-8 until a line that is not valid UTF-8
// appears before any non-ASCII UTF-8 line; from then on the file is decoded as
// Windows-1252 (a superset of Latin-1 for printable text). Lines before that
// point were ASCII and read the same in both. An invalid line in a file already
// seen to be UTF-8 is a bad row.
func ReadExtract(ctx context.Context, r io.Reader, opts ReadOptions, emit func(Practitioner) error) (Report, error) {
	rep := Report{Encoding: EncodingUTF8}
	maxExamples := opts.MaxExamples
	if maxExamples <= 0 {
		maxExamples = 20
	}
	maxLine := opts.MaxLineBytes
	if maxLine <= 0 {
		maxLine = 1 << 20
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine)), maxLine)

	var (
		enc     encState
		conv    []byte
		fields  [][]byte
		colIdx  [numCols]int
		nHeader = -1 // field count of the header, -1 until read
		cur     person
		seen    = make(map[uint64]uint32)
		vals    [numCols]string
	)

	bad := func(line int, reason string) error {
		rep.BadRows++
		if len(rep.Examples) < maxExamples {
			rep.Examples = append(rep.Examples, RowError{Line: line, Reason: reason})
		}
		if opts.MaxBadRows > 0 && rep.BadRows > opts.MaxBadRows {
			return fmt.Errorf("%w: %d rejected (limit %d), last at line %d: %s",
				ErrTooManyBadRows, rep.BadRows, opts.MaxBadRows, line, reason)
		}
		return nil
	}

	flush := func() error {
		if cur.accepted == 0 {
			return nil
		}
		if k, ok := idKey(cur.key); ok {
			seen[k] = uint32(cur.startLine)
		}
		rep.People++
		p := cur.p
		cur = person{}
		if err := emit(p); err != nil {
			return fmt.Errorf("directory: emitting %s: %w", p.IDNat, err)
		}
		return nil
	}

	for sc.Scan() {
		rep.Lines++
		lineNo := rep.Lines
		if lineNo&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("directory: reading extract stopped at line %d: %w", lineNo, err)
			}
		}
		raw := sc.Bytes()
		line := raw
		if !isASCII(raw) {
			switch {
			case enc == encCP1252:
				conv = decodeCP1252(conv[:0], raw)
				line = conv
			case utf8.Valid(raw):
				enc = encUTF8
			case enc == encUndecided:
				enc = encCP1252
				rep.Encoding = EncodingWindows1252
				conv = decodeCP1252(conv[:0], raw)
				line = conv
			default:
				if nHeader >= 0 {
					rep.Rows++
				}
				if err := bad(lineNo, "invalid UTF-8 in a file read as UTF-8"); err != nil {
					return rep, err
				}
				continue
			}
		}

		if nHeader < 0 {
			line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			fields = splitRow(fields[:0], line)
			if n := len(fields); n > 1 && len(bytes.TrimSpace(fields[n-1])) == 0 {
				fields = fields[:n-1]
			}
			nHeader = len(fields)
			byName := make(map[string]int, len(fields))
			for i, f := range fields {
				k := foldCompact(string(f))
				if _, dup := byName[k]; !dup {
					byName[k] = i
				}
			}
			for c, name := range requiredColumns {
				i, ok := byName[foldCompact(name)]
				if !ok {
					rep.MissingColumns = append(rep.MissingColumns, name)
				}
				colIdx[c] = i
			}
			if len(rep.MissingColumns) > 0 {
				return rep, fmt.Errorf("%w: %s", ErrMissingColumns, strings.Join(rep.MissingColumns, ", "))
			}
			continue
		}

		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rep.Rows++
		fields = splitRow(fields[:0], line)
		if n := len(fields); n == nHeader+1 && len(fields[n-1]) == 0 {
			fields = fields[:n-1]
		}
		if len(fields) != nHeader {
			if err := bad(lineNo, fmt.Sprintf("row has %d fields, header has %d", len(fields), nHeader)); err != nil {
				return rep, err
			}
			continue
		}
		for c := range vals {
			vals[c] = fieldString(fields[colIdx[c]], cur.p, c)
		}
		if reason := validateRow(&vals); reason != "" {
			if err := bad(lineNo, reason); err != nil {
				return rep, err
			}
			continue
		}

		idNat := vals[colIDNat]
		if idNat != cur.key {
			if err := flush(); err != nil {
				return rep, err
			}
			cur = person{key: idNat, startLine: lineNo}
			if k, ok := idKey(idNat); ok {
				if first, was := seen[k]; was {
					cur.dup = true
					cur.startLine = int(first)
				}
			}
		}
		if cur.dup {
			reason := fmt.Sprintf("%s already read in rows starting at line %d: rows of a person must be consecutive", idNat, cur.startLine)
			if err := bad(lineNo, reason); err != nil {
				return rep, err
			}
			continue
		}
		if opts.AllowedProfessions != nil && !opts.AllowedProfessions[vals[colProfCode]] {
			rep.Filtered++
			continue
		}
		if cur.accepted > 0 && (vals[colLastName] != cur.p.LastName || vals[colFirstName] != cur.p.FirstName) {
			reason := fmt.Sprintf("name %q %q differs from earlier rows of %s", vals[colFirstName], vals[colLastName], idNat)
			if err := bad(lineNo, reason); err != nil {
				return rep, err
			}
			continue
		}
		merge(&cur, &vals)
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("directory: reading extract after line %d: %w", rep.Lines, err)
	}
	if nHeader < 0 {
		return rep, ErrNoHeader
	}
	if err := flush(); err != nil {
		return rep, err
	}
	return rep, nil
}

// maxKeyDigits bounds idKey so the length tag and the value never overlap.
const maxKeyDigits = 16

// idKey packs a numeric identifier into a uint64, tagging the length so that
// "0123456789" (ADELI idNat) and "123456789" stay distinct. The extract
// reader's set of people already seen uses it to hold 8 bytes a person
// instead of a string. The Index does not: BenchmarkLookup measured string
// keys faster on a million entries (about 125 ns against 200 ns a lookup),
// and the key string is the entry's own IDNat, so it costs no extra memory.
func idKey(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > maxKeyDigits {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		v = v*10 + uint64(c)
	}
	return uint64(len(s))<<56 | v, true
}

// fieldString trims a field and, for identity columns repeated on every row
// of a person, reuses the string already held instead of allocating a copy.
func fieldString(b []byte, p Practitioner, c int) string {
	b = bytes.TrimSpace(b)
	var have string
	switch c {
	case colCivility:
		have = p.Civility
	case colLastName:
		have = p.LastName
	case colFirstName:
		have = p.FirstName
	case colIDNat:
		have = p.IDNat
	case colID:
		have = p.RPPS
	}
	if have != "" && string(b) == have {
		return have
	}
	return string(b)
}

func merge(cur *person, v *[numCols]string) {
	p := &cur.p
	if cur.accepted == 0 {
		p.IDNat = v[colIDNat]
		if v[colIDType] == prefixRPPS {
			p.RPPS = v[colID]
		}
		p.Civility = v[colCivility]
		p.LastName = v[colLastName]
		p.FirstName = v[colFirstName]
		p.Active = true
	}
	cur.accepted++

	prof := Profession{Code: v[colProfCode], Label: v[colProfLabel]}
	known := false
	for _, q := range p.Professions {
		if q.Code == prof.Code {
			known = true
			break
		}
	}
	if !known {
		p.Professions = append(p.Professions, prof)
	}

	// The extract has one row per activity and savoir-faire, so the same
	// activity often repeats; a row without any structure is a practitioner
	// registered without a current place of work.
	act := Activity{
		FINESS: v[colFINESS], SIRET: v[colSIRET], StructureID: v[colStructID],
		StructureName: v[colStructName], PostalCode: v[colPostal], City: v[colCity],
	}
	if act.empty() {
		return
	}
	for _, a := range p.Activities {
		if a == act {
			return
		}
	}
	p.Activities = append(p.Activities, act)
}

// validateRow returns why a row is unusable, or "".
func validateRow(v *[numCols]string) string {
	typ, id, idNat := v[colIDType], v[colID], v[colIDNat]
	switch typ {
	case prefixRPPS:
		if !ValidRPPS(id) {
			return fmt.Sprintf("identifiant PP %q is not a valid RPPS (11 digits, Luhn)", id)
		}
	case prefixADELI:
		if !validADELI(id) {
			return fmt.Sprintf("identifiant PP %q is not a 9-digit ADELI", id)
		}
	default:
		return fmt.Sprintf("type d'identifiant PP %q is neither 8 (RPPS) nor 0 (ADELI)", typ)
	}
	if len(idNat) != len(typ)+len(id) || idNat[:len(typ)] != typ || idNat[len(typ):] != id {
		return fmt.Sprintf("identification nationale PP %q is not type %s + identifiant %s", idNat, typ, id)
	}
	if !allDigits(v[colProfCode]) {
		return fmt.Sprintf("code profession %q is empty or not numeric", v[colProfCode])
	}
	if v[colLastName] == "" {
		return "nom d'exercice is empty"
	}
	return ""
}

// splitRow splits on '|'. Every line of the extract ends with a '|', which
// yields one empty field too many; the caller drops it,
// because when the last column is empty a line without its final '|' is
// otherwise indistinguishable from one that has it.
func splitRow(dst [][]byte, line []byte) [][]byte {
	for {
		i := bytes.IndexByte(line, '|')
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func decodeCP1252(dst, src []byte) []byte {
	for _, c := range src {
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			continue
		}
		dst = utf8.AppendRune(dst, charmap.Windows1252.DecodeByte(c))
	}
	return dst
}
