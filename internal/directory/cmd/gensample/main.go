// Command gensample writes the fictional sample extract shipped in
// schemas/sample, so that the file can be regenerated (and reviewed) from code
// instead of being edited by hand:
//
//	go run ./internal/directory/cmd/gensample -o schemas/sample/PS_LibreAcces_Personne_activite_sample.txt
//
// Every person is invented. RPPS numbers start with 100000 and carry a valid
// Luhn check digit, so they pass validation while being obviously fictional.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/eimis-hub/eimis/internal/directory"
)

type site struct {
	finess, siret, structID, name, street, postal, commune, dept, deptLabel, sector string
}

var sites = []site{
	{"750000001", "12345678900011", "R10000000001", "CENTRE HOSPITALIER FICTIF DE PARIS", "RUE DES LILAS", "75012", "PARIS", "75", "Paris", "SA01"},
	{"690000002", "12345678900029", "R10000000002", "CLINIQUE IMAGINAIRE DU RHÔNE", "AVENUE DES PLATANES", "69003", "LYON", "69", "Rhône", "SA07"},
	{"", "12345678900037", "R10000000003", "CABINET MÉDICAL DES ÉRABLES", "PLACE DE LA FONTAINE", "33000", "BORDEAUX", "33", "Gironde", "SA33"},
	{"", "12345678900045", "R10000000004", "PHARMACIE DU BEFFROI INVENTÉ", "GRANDE RUE", "59000", "LILLE", "59", "Nord", "SA33"},
	{"130000005", "12345678900052", "R10000000005", "MAISON DE SANTÉ PLURIPROFESSIONNELLE DU VIEUX-PORT", "QUAI DES PÊCHEURS", "13002", "MARSEILLE", "13", "Bouches-du-Rhône", "SA29"},
	{"", "12345678900060", "R10000000006", "CABINET DENTAIRE DE L'ÎLE FICTIVE", "RUE DU CHÂTEAU", "29200", "BREST", "29", "Finistère", "SA33"},
}

type person struct {
	civ, civLabel, sex, sexLabel, last, first, prof string
	sites                                           []int
}

var professions = map[string]string{
	"10": "Médecin", "21": "Pharmacien", "40": "Chirurgien-Dentiste",
	"50": "Sage-Femme", "60": "Infirmier", "70": "Masseur-Kinésithérapeute",
}

// Two sites means two rows: one per activity, as in the real extract.
var people = []person{
	{"DR", "Docteur", "F", "Madame", "FONTENELLE", "HÉLÈNE", "10", []int{0}},
	{"DR", "Docteur", "M", "Monsieur", "DE LA ROCHEBRUNE", "JÉRÔME", "10", []int{0, 2}},
	{"DR", "Docteur", "F", "Madame", "MARTIN-DUCHÊNE", "ZOÉ", "10", []int{1}},
	{"DR", "Docteur", "M", "Monsieur", "D'ALMEIRAS", "FRANÇOIS", "10", []int{2}},
	{"DR", "Docteur", "F", "Madame", "LE GUÉVEL", "GAËLLE", "10", []int{4, 0}},
	{"DR", "Docteur", "M", "Monsieur", "BERTHOLIN", "JEAN-BAPTISTE", "10", []int{1}},
	{"DR", "Docteur", "F", "Madame", "AUBRIÈRE", "BÉATRICE", "10", []int{4}},
	{"DR", "Docteur", "M", "Monsieur", "FONTENELLE", "PAUL", "10", []int{2}},
	{"DR", "Docteur", "F", "Madame", "CASTELNOVE", "ANAÏS", "21", []int{3}},
	{"DR", "Docteur", "M", "Monsieur", "VERDALLE", "NOËL", "21", []int{3, 1}},
	{"DR", "Docteur", "F", "Madame", "ROUSSEVAL", "CLÉMENCE", "21", []int{0}},
	{"DR", "Docteur", "M", "Monsieur", "MARCHEBOIS", "THÉO", "21", []int{3}},
	{"DR", "Docteur", "F", "Madame", "KERMORVEN", "MAËLYS", "40", []int{5}},
	{"DR", "Docteur", "M", "Monsieur", "LAVERGNOLLE", "RÉMI", "40", []int{5, 2}},
	{"DR", "Docteur", "F", "Madame", "DUVERNEUIL", "LÉA", "40", []int{5}},
	{"", "", "F", "Madame", "SAINT-ESPRÉVAL", "AGATHE", "50", []int{0}},
	{"", "", "F", "Madame", "MONTCALVET", "CHLOÉ", "50", []int{1, 4}},
	{"", "", "M", "Monsieur", "PERRIGNAC", "ÉLIOT", "50", []int{4}},
	{"", "", "F", "Madame", "BOURDELAIS", "MARIE-HÉLÈNE", "60", []int{0}},
	{"", "", "M", "Monsieur", "GRANDVILLIERS", "LUCAS", "60", []int{1}},
	{"", "", "F", "Madame", "VAN DER HOLST", "INÈS", "60", []int{4, 2}},
	{"", "", "F", "Madame", "TRÉMOLIÈRE", "JULIE", "60", []int{0}},
	{"", "", "M", "Monsieur", "FAUCONNET", "ANTOINE", "60", []int{1}},
	{"", "", "F", "Madame", "QUÉRÉ", "SOLÈNE", "60", []int{5}},
	{"", "", "M", "Monsieur", "DELACOUR", "BENOÎT", "70", []int{2}},
	{"", "", "F", "Madame", "ESCARBILLE", "CAMILLE", "70", []int{2, 4}},
	{"", "", "M", "Monsieur", "HAUTEPIERRE", "YANNICK", "70", []int{5}},
	{"", "", "F", "Madame", "LOMBARDIÈRE", "ÉMILIE", "70", []int{1}},
	{"", "", "M", "Monsieur", "CHÂTELAINVILLE", "HUGO", "10", []int{4}},
	{"", "", "F", "Madame", "MIRANDOLLE", "OCÉANE", "21", []int{0}},
}

// rpps returns "100000" + a 4-digit serial + the Luhn check digit.
func rpps(serial int) string {
	base := fmt.Sprintf("100000%04d", serial)
	for d := byte('0'); d <= '9'; d++ {
		if s := base + string(d); directory.ValidRPPS(s) {
			return s
		}
	}
	panic("unreachable: one digit always completes a Luhn sum")
}

func main() {
	out := flag.String("o", "schemas/sample/PS_LibreAcces_Personne_activite_sample.txt", "output file")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString(strings.Join(directory.ExtractColumns, "|") + "|\n")
	for i, p := range people {
		id := rpps(i + 1)
		for _, si := range p.sites {
			s := sites[si]
			mode, modeLabel := "S", "Salarié"
			if s.finess == "" {
				mode, modeLabel = "L", "Libéral, indépendant, artisan, commerçant"
			}
			sfType, sfTypeLabel, sf, sfLabel := "", "", "", ""
			if p.prof == "10" {
				sfType, sfTypeLabel, sf, sfLabel = "S", "Spécialité ordinale", "SM54", "Médecine générale"
			}
			email := ""
			if i%3 == 0 {
				email = "secretariat@example.invalid"
			}
			row := []string{
				"8", id, directory.IDNatFromRPPS(id),
				p.civ, p.civLabel, p.sex, p.sexLabel, p.last, p.first,
				p.prof, professions[p.prof], "C", "Civil",
				sfType, sfTypeLabel, sf, sfLabel, mode, modeLabel,
				s.siret, s.siret[:9], s.finess, s.finess, s.structID, s.name, "",
				"", "", fmt.Sprint(3 + 2*si), "", "R", "Rue", s.street, "",
				s.postal + " " + s.commune, s.postal, s.dept + "000", s.commune,
				"99000", "France", "0100000000", "", "", email,
				s.dept, s.deptLabel, "1" + s.structID, "ARS/ARS/ARS", s.sector, "Secteur fictif",
				"", "",
			}
			if len(row) != len(directory.ExtractColumns) {
				log.Fatalf("row has %d fields, want %d", len(row), len(directory.ExtractColumns))
			}
			w.WriteString(strings.Join(row, "|") + "|\n")
		}
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
