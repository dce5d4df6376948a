package directory

import "testing"

func TestProperName(t *testing.T) {
	tests := []struct {
		in      string
		leading bool
		want    string
	}{
		{"ERIC", true, "Eric"},
		{"GUIGNARD", false, "Guignard"},
		{"JEAN-PIERRE", true, "Jean-Pierre"},
		{"MARIE-HÉLÈNE", true, "Marie-Hélène"},
		{"ÉMILIE", true, "Émilie"},
		{"DE GAULLE", false, "de Gaulle"},
		{"DE GAULLE", true, "De Gaulle"},
		{"DE LA FONTAINE", false, "de La Fontaine"},
		{"D'ALEMBERT", false, "d'Alembert"},
		{"D'ALEMBERT", true, "D'Alembert"},
		{"O'NEIL", false, "O'Neil"},
		{"LE GALL", false, "Le Gall"},
		{"VAN DER HOLST", false, "van der Holst"},
		{"DI", false, "Di"}, // a surname, not a particle
		{"  MARTIN   DUPONT ", false, "Martin Dupont"},
		{"McDonald", false, "McDonald"}, // mixed case is trusted
		{"", false, ""},
	}
	for _, tt := range tests {
		if got := ProperName(tt.in, tt.leading); got != tt.want {
			t.Errorf("ProperName(%q, %v) = %q, want %q", tt.in, tt.leading, got, tt.want)
		}
	}
}

func TestDisplayName(t *testing.T) {
	med := []Profession{{"10", "Médecin"}, {"21", "Pharmacien"}}
	tests := []struct {
		p    Practitioner
		want string
	}{
		{Practitioner{FirstName: "ERIC", LastName: "GUIGNARD", Professions: med}, "Eric Guignard - Médecin"},
		{Practitioner{FirstName: "JEAN", LastName: "DE LA FONTAINE", Professions: []Profession{{"60", "Infirmier"}}}, "Jean de La Fontaine - Infirmier"},
		{Practitioner{LastName: "DUPONT", Professions: med}, "Dupont - Médecin"},
		{Practitioner{FirstName: "ZOÉ", LastName: "MARTIN-DUCHÊNE"}, "Zoé Martin-Duchêne"},
	}
	for _, tt := range tests {
		if got := tt.p.DisplayName(); got != tt.want {
			t.Errorf("DisplayName(%+v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestFold(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Libellé commune (coord. Structure)", "libelle commune coord structure"},
		{"TYPE D’IDENTIFIANT PP", "type d identifiant pp"},
		{"CŒUR Æther straße", "coeur aether strasse"},
		{"  Marie-Hélène  ", "marie helene"},
		{"e\u0301cole", "ecole"}, // decomposed input
	}
	for _, tt := range tests {
		if got := fold(tt.in); got != tt.want {
			t.Errorf("fold(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
