package directory

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestWriteExtractRoundTrip(t *testing.T) {
	in := []Practitioner{
		{IDNat: IDNatFromRPPS(SyntheticRPPS(1)), RPPS: SyntheticRPPS(1), Civility: "Docteur", FirstName: "ALICE", LastName: "MARTIN", Active: true,
			Professions: []Profession{{"10", "Médecin"}}, Activities: []Activity{{City: "LYON", PostalCode: "69003"}, {City: "PARIS"}}},
		{IDNat: IDNatFromRPPS(SyntheticRPPS(2)), RPPS: SyntheticRPPS(2), FirstName: "BOB", LastName: "DURAND", Active: true,
			Professions: []Profession{{"60", "Infirmier"}}},
	}
	var buf bytes.Buffer
	if err := WriteExtract(&buf, in); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 4 {
		t.Fatalf("%d lines, want header + 3 rows", n)
	}
	var out []Practitioner
	rep, err := ReadExtract(context.Background(), &buf, ReadOptions{}, func(p Practitioner) error {
		out = append(out, p)
		return nil
	})
	if err != nil || rep.BadRows != 0 {
		t.Fatalf("read back: %v, %+v", err, rep)
	}
	if len(out) != 2 || out[0].DisplayName() != "Alice Martin - Médecin" || len(out[0].Activities) != 2 || out[0].Activities[0].City != "LYON" {
		t.Fatalf("read back %+v", out)
	}
	if err := WriteExtract(&bytes.Buffer{}, []Practitioner{{IDNat: "8x", LastName: "A|B", Professions: []Profession{{"10", "M"}}}}); err == nil {
		t.Fatal("a separator in a name must be refused")
	}
}

func TestSyntheticRPPS(t *testing.T) {
	seen := map[string]bool{}
	for i := range 1000 {
		r := SyntheticRPPS(i)
		if !ValidRPPS(r) || !strings.HasPrefix(r, "19") || seen[r] {
			t.Fatalf("SyntheticRPPS(%d) = %s", i, r)
		}
		seen[r] = true
	}
}
