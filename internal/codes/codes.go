// Package codes is the hub's one table of refusal and error codes, with
// each code's HTTP status, Matrix errcode, English and French texts and
// description. The table is schemas/codes.json; `go generate
// ./internal/codes` turns it into this package's table, into the typed
// constants and messages of internal/policy, internal/operators and
// bridges/gateway, into the bridge SDK's error values and into
// docs/refusal-codes.md. Never edit a generated file: edit the JSON and
// regenerate (a test fails when they disagree).
package codes

//go:generate go run ./gen

// Info is what the hub knows of one code.
type Info struct {
	// Code is the stable code, sent as eimis_code or a frame's code.
	Code string
	// Group is the code's family: trust, access, login, limit, consent,
	// operator, protocol.
	Group string
	// HTTPStatus and Errcode are the Matrix error an HTTP API answers
	// with this code.
	HTTPStatus int
	Errcode    string
	// Refusal is true for a decision against someone (counted and
	// audited), false for malformed input or a failure of the hub.
	Refusal bool
	// Message is the human text; %s is the subject (a user ID, an idNat,
	// an operator ID or a server name), %.0s leaves it out. Codes of the
	// Bridge Protocol alone have no subject.
	Message Text
	// BridgeMessage is the Bridge Protocol's default text, without a
	// subject, when it differs from Message; zero otherwise.
	BridgeMessage Text
	// Description is what the code means, for the docs.
	Description string
}

// Text is a message in English and French.
type Text struct {
	EN, FR string
}

// In returns the text in lang ("fr" or "en"), English for any other.
func (t Text) In(lang string) string {
	if lang == "fr" && t.FR != "" {
		return t.FR
	}
	return t.EN
}

var byCode = func() map[string]int {
	m := make(map[string]int, len(table))
	for i, c := range table {
		m[c.Code] = i
	}
	return m
}()

// Lookup returns the code's Info.
func Lookup(code string) (Info, bool) {
	i, ok := byCode[code]
	if !ok {
		return Info{}, false
	}
	return table[i], true
}

// All returns every code, in the table's order (oldest first).
func All() []Info {
	out := make([]Info, len(table))
	copy(out, table[:])
	return out
}
