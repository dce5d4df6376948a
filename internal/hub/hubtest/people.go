package hubtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/hub"
)

// Names are the test practitioners: every hub test talks about alice and
// bob, and on a health hub they must be practitioners of the directory.
// Name i is the practitioner with synthetic RPPS serial i+1.
var Names = []string{"alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"}

// Users is how many extra practitioners People lists as "user<n>".
const Users = 500

func serialOf(name string) (int, bool) {
	if i := slices.Index(Names, name); i >= 0 {
		return i + 1, true
	}
	var n int
	if _, err := fmt.Sscanf(name, "user%d", &n); err == nil && fmt.Sprintf("user%d", n) == name {
		return 1000 + n, true
	}
	return 0, false
}

// Localpart maps a test name to the practitioner's idNat; anything else
// (an idNat, an organisational account) is used as it is.
func Localpart(name string) string {
	if s, ok := serialOf(name); ok {
		return directory.IDNatFromRPPS(directory.SyntheticRPPS(s))
	}
	return name
}

// UserID is the Matrix ID of a test name on a server.
func UserID(name, server string) id.UserID {
	return id.NewUserID(Localpart(name), server)
}

// UserID is the Matrix ID of a test name on this hub.
func (h *Hub) UserID(name string) id.UserID { return UserID(name, h.Config.ServerName) }

// Person is the directory entry of a test name.
func Person(name string) directory.Practitioner {
	s, ok := serialOf(name)
	if !ok {
		panic("hubtest: not a test name: " + name)
	}
	rpps := directory.SyntheticRPPS(s)
	first := []rune(name)
	first[0] = unicode.ToUpper(first[0])
	prof := directory.Profession{Code: "10", Label: "Médecin"}
	if s%2 == 0 {
		prof = directory.Profession{Code: "60", Label: "Infirmier"}
	}
	return directory.Practitioner{
		IDNat: directory.IDNatFromRPPS(rpps), RPPS: rpps, Civility: "Docteur",
		FirstName: strings.ToUpper(string(first)), LastName: "TEST", Active: true,
		Professions: []directory.Profession{prof},
		Activities:  []directory.Activity{{StructureName: "HOPITAL DE TEST", PostalCode: "69003", City: "LYON"}},
	}
}

// People is the default test directory: Names and user0…user499.
func People() []directory.Practitioner {
	out := make([]directory.Practitioner, 0, len(Names)+Users)
	for _, n := range Names {
		out = append(out, Person(n))
	}
	for i := range Users {
		out = append(out, Person(fmt.Sprintf("user%d", i)))
	}
	return out
}

// Without returns people minus the named ones: importing it makes them
// inactive, as leaving the real extract does.
func Without(people []directory.Practitioner, names ...string) []directory.Practitioner {
	drop := map[string]bool{}
	for _, n := range names {
		drop[Localpart(n)] = true
	}
	var out []directory.Practitioner
	for _, p := range people {
		if !drop[p.IDNat] {
			out = append(out, p)
		}
	}
	return out
}

// ExtractFile writes people as a published-format extract and returns its
// path, for `eimis-hub directory import` in process tests.
func ExtractFile(t testing.TB, people []directory.Practitioner) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "PS_LibreAcces_Personne_activite_test.txt")
	var buf bytes.Buffer
	if err := directory.WriteExtract(&buf, people); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ImportDirectory imports people into the hub's store through the same
// path as `eimis-hub directory import`; the hub sees it at its next
// trust refresh (Refresh to make that now).
func (h *Hub) ImportDirectory(t testing.TB, people []directory.Practitioner) {
	t.Helper()
	var buf bytes.Buffer
	if err := directory.WriteExtract(&buf, people); err != nil {
		t.Fatal(err)
	}
	if _, _, err := directory.Import(context.Background(), h.Store, &buf, directory.ReadOptions{}); err != nil {
		t.Fatalf("import directory: %v", err)
	}
}

func importIfEmpty(t testing.TB, cfg config.Config, people []directory.Practitioner) {
	t.Helper()
	ctx := context.Background()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	stats, err := st.DirectoryStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Generation > 0 {
		return
	}
	var buf bytes.Buffer
	if err := directory.WriteExtract(&buf, people); err != nil {
		t.Fatal(err)
	}
	if _, _, err := directory.Import(ctx, st, &buf, directory.ReadOptions{}); err != nil {
		t.Fatalf("import test directory: %v", err)
	}
}
