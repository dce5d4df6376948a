package fhirtest

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"
)

// LuhnCheckDigit returns the digit that makes base+digit pass the Luhn test,
// as RPPS numbers do.
func LuhnCheckDigit(base string) byte {
	sum := 0
	// Digits of base are weighted as if the check digit were already
	// appended, so the rightmost digit of base is doubled.
	for i := 0; i < len(base); i++ {
		d := int(base[len(base)-1-i] - '0')
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

// RPPS is the i-th fictional RPPS number (0 <= i < 10000): the 109999xxxx
// range, which no real practitioner has, with a valid check digit.
func RPPS(i int) string {
	base := fmt.Sprintf("109999%04d", i)
	return base + string(LuhnCheckDigit(base))
}

var (
	families = []string{"LEFICTIF", "DUPONT-TEST", "ESSAI", "EXEMPLE", "MODELE", "FACTICE", "SIMULE"}
	givens   = []string{"JEANNE", "LUC", "SOPHIE", "KARIM", "INES", "THEO", "LINA"}
	profs    = [][2]string{{"10", "Médecin"}, {"60", "Infirmier"}, {"21", "Pharmacien"}, {"50", "Sage-Femme"}}
)

// Fictional is the i-th fictional practitioner, active and last updated at
// updated: Practitioner 003-<100+i> with idNat "8"+RPPS(i), a name, and one
// active PractitionerRole carrying a TRE_G15 profession and an organization.
func Fictional(i int, updated time.Time) Record {
	rpps := RPPS(i)
	id := fmt.Sprintf("003-%d", 100+i)
	prof := profs[i%len(profs)]
	pract := map[string]any{
		"resourceType": "Practitioner",
		"id":           id,
		"meta":         map[string]any{"lastUpdated": updated.UTC().Format(time.RFC3339), "versionId": "1"},
		"identifier": []any{
			map[string]any{"use": "official", "type": map[string]any{"coding": []any{map[string]any{"code": "IDNPS"}}}, "system": SystemIDNat, "value": "8" + rpps},
			map[string]any{"use": "official", "type": map[string]any{"coding": []any{map[string]any{"code": "RPPS"}}}, "system": SystemRPPS, "value": rpps},
		},
		"active": true,
		"name":   []any{map[string]any{"family": families[i%len(families)], "given": []string{givens[i%len(givens)]}, "prefix": []string{"DR"}}},
	}
	role := map[string]any{
		"resourceType": "PractitionerRole",
		"id":           id + "-role",
		"active":       true,
		"practitioner": map[string]any{"reference": "Practitioner/" + id},
		"organization": map[string]any{"reference": fmt.Sprintf("Organization/org-%d", i%3), "display": fmt.Sprintf("Structure fictive %d", i%3)},
		"code":         []any{map[string]any{"coding": []any{map[string]any{"system": SystemProfession, "code": prof[0], "display": prof[1]}}}},
	}
	return Record{ID: id, LastUpdated: updated, Resource: mustJSON(pract), Roles: []json.RawMessage{mustJSON(role)}}
}

// Generate returns Fictional(0…n-1), updated one hour apart from start.
func Generate(n int, start time.Time) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Fictional(i, start.Add(time.Duration(i)*time.Hour))
	}
	return out
}

// mustJSON panics rather than taking a testing.TB: it only ever encodes
// maps of strings and slices built above, which cannot fail.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// LoadRecords reads a file made of {"practitioner": …, "roles": […]}
// objects, taking each LastUpdated from the Practitioner's meta.
func LoadRecords(t testing.TB, path string) []Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw []struct {
		Practitioner json.RawMessage   `json:"practitioner"`
		Roles        []json.RawMessage `json:"roles"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []Record
	for _, r := range raw {
		var head struct {
			ID   string `json:"id"`
			Meta struct {
				LastUpdated time.Time `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(r.Practitioner, &head); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, Record{ID: head.ID, LastUpdated: head.Meta.LastUpdated, Resource: r.Practitioner, Roles: r.Roles})
	}
	return out
}
