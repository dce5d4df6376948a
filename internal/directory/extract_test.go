package directory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readFile(t *testing.T, path string, opts ReadOptions) ([]Practitioner, Report, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Practitioner
	rep, err := ReadExtract(context.Background(), f, opts, func(p Practitioner) error {
		got = append(got, p)
		return nil
	})
	return got, rep, err
}

func readString(t *testing.T, s string, opts ReadOptions) ([]Practitioner, Report, error) {
	t.Helper()
	var got []Practitioner
	rep, err := ReadExtract(context.Background(), strings.NewReader(s), opts, func(p Practitioner) error {
		got = append(got, p)
		return nil
	})
	return got, rep, err
}

func byIDNat(ps []Practitioner) map[string]Practitioner {
	m := make(map[string]Practitioner, len(ps))
	for _, p := range ps {
		m[p.IDNat] = p
	}
	return m
}

// header is the published header line.
var header = strings.Join(ExtractColumns, "|") + "|"

// testRow builds a 52-field row; set overrides columns by published name.
func testRow(t testing.TB, set map[string]string) string {
	t.Helper()
	f := make([]string, len(ExtractColumns))
	for name, v := range set {
		i := -1
		for j, c := range ExtractColumns {
			if c == name {
				i = j
			}
		}
		if i < 0 {
			t.Fatalf("no column %q", name)
		}
		f[i] = v
	}
	return strings.Join(f, "|") + "|"
}

func personRow(t testing.TB, rpps, last, first, code, label, finess string) string {
	return testRow(t, map[string]string{
		"Type d'identifiant PP": "8", "Identifiant PP": rpps, "Identification nationale PP": "8" + rpps,
		"Nom d'exercice": last, "Prénom d'exercice": first, "Code profession": code,
		"Libellé profession": label, "Numéro FINESS site": finess,
	})
}

func TestReadSample(t *testing.T) {
	got, rep, err := readFile(t, filepath.Join("..", "..", "schemas", "sample", "PS_LibreAcces_Personne_activite_sample.txt"), ReadOptions{MaxBadRows: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.People != 30 || rep.Rows != 37 || rep.Lines != 38 || rep.BadRows != 0 || rep.Encoding != EncodingUTF8 {
		t.Fatalf("report = %+v", rep)
	}
	perProf := map[string]int{}
	twoActivities := 0
	for _, p := range got {
		if !strings.HasPrefix(p.RPPS, "100000") || !ValidRPPS(p.RPPS) || p.IDNat != "8"+p.RPPS || !p.Active {
			t.Errorf("bad practitioner %+v", p)
		}
		perProf[p.Professions[0].Code]++
		if len(p.Activities) == 2 {
			twoActivities++
		}
	}
	want := map[string]int{"10": 9, "21": 5, "40": 3, "50": 3, "60": 6, "70": 4}
	if !reflect.DeepEqual(perProf, want) {
		t.Errorf("per profession = %v, want %v", perProf, want)
	}
	if twoActivities != 7 {
		t.Errorf("%d practitioners with two activities, want 7", twoActivities)
	}
	m := byIDNat(got)
	if dn := m["810000000025"].DisplayName(); dn != "Jérôme de La Rochebrune - Médecin" {
		t.Errorf("display name = %q", dn)
	}
}

func TestReadBadRows(t *testing.T) {
	got, rep, err := readFile(t, "testdata/bad_rows.txt", ReadOptions{MaxExamples: 100})
	if err != nil {
		t.Fatal(err)
	}
	wantLines := []int{4, 6, 7, 8, 9, 11, 12, 15, 17}
	var lines []int
	for _, e := range rep.Examples {
		lines = append(lines, e.Line)
	}
	if !reflect.DeepEqual(lines, wantLines) {
		t.Errorf("bad lines = %v, want %v\n%v", lines, wantLines, rep.Examples)
	}
	if rep.BadRows != 9 || rep.Rows != 15 || rep.Lines != 17 || rep.People != 5 {
		t.Errorf("report = %+v", rep)
	}
	for _, e := range rep.Examples {
		t.Logf("%s", e)
	}
	if !strings.Contains(rep.Examples[6].Reason, "consecutive") {
		t.Errorf("line 12 reason = %q", rep.Examples[6].Reason)
	}

	m := byIDNat(got)
	if len(m) != 5 {
		t.Fatalf("emitted %d distinct of %d", len(m), len(got))
	}
	alice := m["810000090018"]
	if len(alice.Activities) != 2 || len(alice.Professions) != 1 || alice.DisplayName() != "Alice Durand - Médecin" {
		t.Errorf("alice = %+v", alice)
	}
	david, ok := m["0751234567"]
	if !ok || david.RPPS != "" || david.Civility != "" || david.Professions[0].Code != "60" {
		t.Errorf("ADELI practitioner = %+v", david)
	}
	if _, ok := m["810000090042"]; !ok {
		t.Error("practitioner with one bad row among good ones was dropped")
	}
	emma := m["810000090059"]
	if len(emma.Professions) != 1 || emma.Professions[0].Code != "70" {
		t.Errorf("emma = %+v", emma)
	}
}

func TestReadMaxBadRows(t *testing.T) {
	_, rep, err := readFile(t, "testdata/bad_rows.txt", ReadOptions{MaxBadRows: 3, MaxExamples: 2})
	if !errors.Is(err, ErrTooManyBadRows) {
		t.Fatalf("err = %v, want ErrTooManyBadRows", err)
	}
	if rep.BadRows != 4 || len(rep.Examples) != 2 || !strings.Contains(err.Error(), "line 8") {
		t.Errorf("report = %+v, err = %v", rep, err)
	}
}

func TestReadAllowedProfessions(t *testing.T) {
	got, rep, err := readFile(t, "testdata/bad_rows.txt", ReadOptions{AllowedProfessions: map[string]bool{"10": true, "60": true}})
	if err != nil {
		t.Fatal(err)
	}
	// B (21), C2 (50) and both rows of E (70) are filtered out, not reported
	// bad: rows out of scope are not checked against their person.
	if rep.People != 2 || rep.Filtered != 4 || rep.BadRows != 8 {
		t.Errorf("report = %+v", rep)
	}
	for _, p := range got {
		if c := p.Professions[0].Code; c != "10" && c != "60" {
			t.Errorf("profession %s not filtered", c)
		}
	}
}

func TestReadLatin1(t *testing.T) {
	got, rep, err := readFile(t, "testdata/latin1.txt", ReadOptions{MaxBadRows: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Encoding != EncodingWindows1252 || rep.People != 3 || rep.BadRows != 0 {
		t.Fatalf("report = %+v", rep)
	}
	m := byIDNat(got)
	if p := m["810000091016"]; p.LastName != "LEFÈVRE" || p.FirstName != "HÉLÈNE" || p.Activities[0].City != "SAINT-ÉTIENNE" {
		t.Errorf("decoded = %+v", p)
	}
	// Œ exists in Windows-1252 (0x9C) but not in ISO-8859-1.
	if p := m["810000091024"]; p.DisplayName() != "François Cœurderoy - Médecin" || len(p.Activities) != 2 {
		t.Errorf("decoded = %+v / %q", p, p.DisplayName())
	}
}

func TestReadVariantHeader(t *testing.T) {
	got, rep, err := readFile(t, "testdata/variant_header.txt", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.People != 1 || len(got) != 1 {
		t.Fatalf("report = %+v", rep)
	}
	a := got[0].Activities[0]
	if got[0].IDNat != "810000092014" || a.City != "NANTES" || a.PostalCode != "44000" || a.StructureID != "R10000000001" || a.FINESS != "750000001" {
		t.Errorf("got %+v", got[0])
	}
}

func TestReadMissingColumns(t *testing.T) {
	_, rep, err := readFile(t, "testdata/missing_column.txt", ReadOptions{})
	if !errors.Is(err, ErrMissingColumns) {
		t.Fatalf("err = %v", err)
	}
	want := []string{"Code profession", "Libellé commune (coord. structure)"}
	if !reflect.DeepEqual(rep.MissingColumns, want) {
		t.Errorf("missing = %q, want %q", rep.MissingColumns, want)
	}
	if !strings.Contains(err.Error(), "Code profession") {
		t.Errorf("error does not name the column: %v", err)
	}
}

func TestReadEncodingSwitches(t *testing.T) {
	a, b := withCheckDigit(t, "1000000001"), withCheckDigit(t, "1000000002")
	// An ASCII-only header cannot tell UTF-8 from Latin-1; the first
	// non-ASCII line decides.
	asciiHeader := strings.Join(func() []string {
		var out []string
		for _, c := range ExtractColumns {
			out = append(out, foldCompact(c))
		}
		return out
	}(), "|") + "|"
	latin := asciiHeader + "\n" + personRow(t, a, "DUPONT", "ANNE", "10", "M\xe9decin", "") + "\n"
	got, rep, err := readString(t, latin, ReadOptions{})
	if err != nil || rep.Encoding != EncodingWindows1252 || len(got) != 1 || got[0].Professions[0].Label != "Médecin" {
		t.Fatalf("latin after ascii header: %+v %+v %v", got, rep, err)
	}

	// Once UTF-8 is established, an invalid line is a bad row, not a switch.
	mixed := header + "\n" + personRow(t, a, "DUPONT", "ANNE", "10", "Médecin", "") + "\n" +
		personRow(t, b, "MARTIN", "L\xc9A", "10", "M\xe9decin", "") + "\n"
	got, rep, err = readString(t, mixed, ReadOptions{})
	if err != nil || rep.Encoding != EncodingUTF8 || len(got) != 1 || rep.BadRows != 1 || rep.Examples[0].Line != 3 {
		t.Fatalf("mixed: %+v %+v %v", got, rep, err)
	}
}

func TestReadEdgeCases(t *testing.T) {
	a := withCheckDigit(t, "1000000001")
	tests := []struct {
		name    string
		in      string
		people  int
		bad     int
		wantErr error
	}{
		{"empty", "", 0, 0, ErrNoHeader},
		{"header only", header + "\n", 0, 0, nil},
		{"no trailing pipe, no final newline", header + "\n" + strings.TrimSuffix(personRow(t, a, "X", "Y", "10", "Médecin", ""), "|"), 1, 0, nil},
		{"CRLF", header + "\r\n" + personRow(t, a, "X", "Y", "10", "Médecin", "") + "\r\n", 1, 0, nil},
		{"extra pipe in a value", header + "\n" + personRow(t, a, "X|Z", "Y", "10", "Médecin", "") + "\n", 0, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rep, err := readString(t, tt.in, ReadOptions{})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if rep.People != tt.people || rep.BadRows != tt.bad {
				t.Errorf("report = %+v", rep)
			}
		})
	}
}

func TestReadCancelAndEmitError(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(header + "\n")
	for i := 0; i < 5000; i++ {
		sb.WriteString(personRow(t, withCheckDigit(t, "100000"+leftPad(i)), "NOM", "PRENOM", "10", "Médecin", "") + "\n")
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := ReadExtract(ctx, strings.NewReader(sb.String()), ReadOptions{}, func(Practitioner) error {
		n++
		if n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n >= 5000 {
		t.Errorf("cancel: err = %v after %d", err, n)
	}

	stop := errors.New("disk full")
	rep, err := ReadExtract(context.Background(), strings.NewReader(sb.String()), ReadOptions{}, func(Practitioner) error { return stop })
	if !errors.Is(err, stop) || rep.People != 1 {
		t.Errorf("emit error: err = %v, rep = %+v", err, rep)
	}
}

func leftPad(i int) string {
	s := "0000" + itoa(i)
	return s[len(s)-4:]
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestIDKey(t *testing.T) {
	seen := map[uint64]string{}
	for _, s := range []string{"0751234567", "751234567", "810001045367", "0", "00", "9999999999999999"} {
		k, ok := idKey(s)
		if !ok {
			t.Fatalf("idKey(%q) rejected", s)
		}
		if prev, dup := seen[k]; dup {
			t.Errorf("idKey(%q) == idKey(%q)", s, prev)
		}
		seen[k] = s
	}
	for _, s := range []string{"", "12345678901234567", "8100a", " 1"} {
		if _, ok := idKey(s); ok {
			t.Errorf("idKey(%q) accepted", s)
		}
	}
}

// FuzzReadExtract checks that no input makes the reader panic, and that it
// never emits the same person twice.
func FuzzReadExtract(f *testing.F) {
	for _, name := range []string{"bad_rows.txt", "latin1.txt", "variant_header.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		seen := map[string]bool{}
		rep, err := ReadExtract(context.Background(), strings.NewReader(string(data)), ReadOptions{}, func(p Practitioner) error {
			if seen[p.IDNat] {
				t.Fatalf("%s emitted twice", p.IDNat)
			}
			seen[p.IDNat] = true
			if _, _, err := ParseIDNat(p.IDNat); err != nil {
				t.Fatalf("emitted invalid idNat: %v", err)
			}
			return nil
		})
		if err == nil && rep.People != len(seen) {
			t.Fatalf("report says %d people, emitted %d", rep.People, len(seen))
		}
	})
}
