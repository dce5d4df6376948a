package directory

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

func prac(t testing.TB, serial int, first, last string, active bool, profs ...Profession) Practitioner {
	rpps := withCheckDigit(t, fmt.Sprintf("100000%04d", serial))
	return Practitioner{IDNat: IDNatFromRPPS(rpps), RPPS: rpps, FirstName: first, LastName: last, Professions: profs, Active: active}
}

var (
	medecin   = Profession{"10", "Médecin"}
	infirmier = Profession{"60", "Infirmier"}
	sageFemme = Profession{"50", "Sage-Femme"}
)

func testIndex(t testing.TB) (*Index, []Practitioner) {
	ps := []Practitioner{
		prac(t, 1, "ERIC", "GUIGNARD", true, medecin),
		prac(t, 2, "ERICA", "GUIGNARDIN", true, infirmier),
		prac(t, 3, "MARIE-HÉLÈNE", "MARTIN", true, sageFemme, medecin),
		prac(t, 4, "PAUL", "MARTINEZ", true, medecin),
		prac(t, 5, "ANNE", "MARTIN", false, medecin), // no longer registered
		prac(t, 6, "MARTIN", "DUBOIS", true, infirmier),
		{IDNat: IDNatFromRPPS(withCheckDigit(t, "1000000007")), FirstName: "LÉA", LastName: "ROUX", Active: true,
			Professions: []Profession{medecin}, Activities: []Activity{{City: "SAINT-ÉTIENNE"}, {City: "LYON"}}},
		{IDNat: "0751234567", FirstName: "DAVID", LastName: "DENIS", Professions: []Profession{infirmier}, Active: true},
	}
	b := NewIndexBuilder()
	for _, p := range ps {
		b.Add(p)
	}
	return b.Build(), ps
}

func TestIndexLookup(t *testing.T) {
	ix, ps := testIndex(t)
	if ix.Len() != len(ps) {
		t.Fatalf("Len = %d", ix.Len())
	}
	for _, p := range ps {
		e, ok := ix.Lookup(p.IDNat)
		if !ok || e.IDNat != p.IDNat || e.Active != p.Active || e.DisplayName != p.DisplayName() {
			t.Errorf("Lookup(%s) = %+v, %v", p.IDNat, e, ok)
		}
	}
	e, _ := ix.Lookup(ps[2].IDNat)
	if !e.HasProfession("50") || !e.HasProfession("10") || e.HasProfession("60") {
		t.Errorf("professions = %v", e.ProfessionCodes)
	}
	for _, miss := range []string{"", "8", "751234567", "00751234567", "810000000000", "8100000000x7", "12345678901234567"} {
		if _, ok := ix.Lookup(miss); ok {
			t.Errorf("Lookup(%q) found something", miss)
		}
	}
	var nilIx *Index
	if _, ok := nilIx.Lookup(ps[0].IDNat); ok || nilIx.Search("eric", 5) != nil || nilIx.Len() != 0 {
		t.Error("nil index answered")
	}
}

func TestIndexAddReplaces(t *testing.T) {
	b := NewIndexBuilder()
	p := prac(t, 1, "ERIC", "GUIGNARD", true, medecin)
	b.Add(p)
	p.Active = false
	p.LastName = "GUIGNARD-DUVAL"
	b.Add(p)
	ix := b.Build()
	e, ok := ix.Lookup(p.IDNat)
	if ix.Len() != 1 || !ok || e.Active || e.DisplayName != "Eric Guignard-Duval - Médecin" {
		t.Errorf("%d entries, %+v", ix.Len(), e)
	}
	if b.Build().Len() != 0 {
		t.Error("builder not reset by Build")
	}
}

func names(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.DisplayName)
	}
	return out
}

func TestIndexSearch(t *testing.T) {
	ix, _ := testIndex(t)
	tests := []struct {
		query string
		limit int
		want  []string
	}{
		// Exact full name first, then prefix matches.
		{"Eric Guignard", 10, []string{"Eric Guignard - Médecin", "Erica Guignardin - Infirmier"}},
		{"guignard eric", 10, []string{"Eric Guignard - Médecin", "Erica Guignardin - Infirmier"}},
		{"eric", 10, []string{"Eric Guignard - Médecin", "Erica Guignardin - Infirmier"}},
		{"eric", 1, []string{"Eric Guignard - Médecin"}},
		// Exact last name outranks a first name that is a whole word, which
		// outranks prefixes; the inactive Anne Martin is not listed.
		{"martin", 10, []string{"Marie-Hélène Martin - Sage-Femme", "Martin Dubois - Infirmier", "Paul Martinez - Médecin"}},
		{"helene", 10, []string{"Marie-Hélène Martin - Sage-Femme"}},
		{"MARIE-HÉLÈNE", 10, []string{"Marie-Hélène Martin - Sage-Femme"}},
		// Profession labels are searchable, combined with names.
		{"infirm", 10, []string{"David Denis - Infirmier", "Erica Guignardin - Infirmier", "Martin Dubois - Infirmier"}},
		{"medecin mart", 10, []string{"Marie-Hélène Martin - Sage-Femme", "Paul Martinez - Médecin"}},
		{"sage femme", 10, []string{"Marie-Hélène Martin - Sage-Femme"}},
		// Cities, alone or with a profession.
		{"lyon", 10, []string{"Léa Roux - Médecin"}},
		{"medecin saint etienne", 10, []string{"Léa Roux - Médecin"}},
		{"infirmier lyon", 10, nil},
		{"zzz", 10, nil},
		{"eric zzz", 10, nil},
		{"", 10, nil},
		{"  -- ", 10, nil},
		{"eric", 0, nil},
	}
	for _, tt := range tests {
		got := names(ix.Search(tt.query, tt.limit))
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Search(%q, %d) = %q, want %q", tt.query, tt.limit, got, tt.want)
		}
	}
}

func TestIndexFromSample(t *testing.T) {
	ps, _, err := readFile(t, filepath.Join("..", "..", "schemas", "sample", "PS_LibreAcces_Personne_activite_sample.txt"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := NewIndexBuilder()
	for _, p := range ps {
		b.Add(p)
	}
	ix := b.Build()
	if ix.Len() != 30 {
		t.Fatalf("Len = %d", ix.Len())
	}
	got := names(ix.Search("fontenelle", 5))
	want := []string{"Hélène Fontenelle - Médecin", "Paul Fontenelle - Médecin"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Search = %q", got)
	}
	if n := len(ix.Search("kine", 100)); n != 4 {
		t.Errorf("%d kinés, want 4", n)
	}
	if n := len(ix.Search("m", 3)); n != 3 {
		t.Errorf("limit not applied: %d", n)
	}
}

// Readers racing a Swap see either snapshot whole: run with -race.
func TestAtomicSwap(t *testing.T) {
	var a Atomic
	if a.Load() != nil {
		t.Fatal("zero Atomic not empty")
	}
	p1 := prac(t, 1, "ERIC", "GUIGNARD", true, medecin)
	mk := func(active bool) *Index {
		b := NewIndexBuilder()
		q := p1
		q.Active = active
		b.Add(q)
		return b.Build()
	}
	oldIx, newIx := mk(true), mk(false)
	a.Swap(oldIx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10000 {
				ix := a.Load()
				e, ok := ix.Lookup(p1.IDNat)
				if !ok || (ix == oldIx) != e.Active {
					t.Error("mixed snapshot")
					return
				}
			}
		}()
	}
	if prev := a.Swap(newIx); prev != oldIx {
		t.Error("Swap did not return the previous index")
	}
	wg.Wait()
}
