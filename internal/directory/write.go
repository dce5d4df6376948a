package directory

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteExtract writes practitioners in the published extract format (the
// columns the reader uses filled, the others empty): one row per
// profession and activity, as the real file has. Tools and tests use it
// to build directories that go through the same import path as the real
// file.
func WriteExtract(w io.Writer, ps []Practitioner) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(strings.Join(ExtractColumns, "|") + "|\n")
	index := map[string]int{}
	for i, c := range ExtractColumns {
		index[c] = i
	}
	row := make([]string, len(ExtractColumns))
	set := func(col int, v string) { row[index[requiredColumns[col]]] = v }
	for _, p := range ps {
		if strings.ContainsAny(p.FirstName+p.LastName+p.Civility, "|\n") {
			return fmt.Errorf("directory: write extract: %s: name contains a separator", p.IDNat)
		}
		acts := p.Activities
		if len(acts) == 0 {
			acts = []Activity{{}}
		}
		for _, pr := range p.Professions {
			for _, a := range acts {
				clear(row)
				if p.RPPS != "" {
					set(colIDType, "8")
					set(colID, p.RPPS)
				} else {
					set(colIDType, "0")
					set(colID, strings.TrimPrefix(p.IDNat, "0"))
				}
				set(colIDNat, p.IDNat)
				set(colCivility, p.Civility)
				set(colLastName, p.LastName)
				set(colFirstName, p.FirstName)
				set(colProfCode, pr.Code)
				set(colProfLabel, pr.Label)
				set(colFINESS, a.FINESS)
				set(colSIRET, a.SIRET)
				set(colStructID, a.StructureID)
				set(colStructName, a.StructureName)
				set(colPostal, a.PostalCode)
				set(colCity, a.City)
				bw.WriteString(strings.Join(row, "|") + "|\n")
			}
		}
	}
	return bw.Flush()
}

// SyntheticRPPS returns the fictional RPPS number of a serial: "19", the
// serial on 8 digits, then the Luhn check digit. Real RPPS numbers start
// with 10, so synthetic directories (tests, benchmarks) never name a real
// person.
func SyntheticRPPS(serial int) string {
	base := fmt.Sprintf("19%08d", serial%100_000_000)
	for d := byte('0'); d <= '9'; d++ {
		if s := base + string(d); ValidRPPS(s) {
			return s
		}
	}
	panic("unreachable: one digit always completes a Luhn sum")
}
