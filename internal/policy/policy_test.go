package policy

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/store"
)

// rpps makes a valid RPPS (Luhn) from a 10-digit stem.
func rpps(stem string) string {
	for d := 0; d <= 9; d++ {
		if s := stem + strconv.Itoa(d); directory.ValidRPPS(s) {
			return s
		}
	}
	panic("no check digit")
}

func engine(t testing.TB, allowed []string) (*Engine, map[string]string) {
	t.Helper()
	ids := map[string]string{
		"doctor":   "8" + rpps("1000000001"),
		"nurse":    "8" + rpps("1000000002"),
		"inactive": "8" + rpps("1000000003"),
		"unknown":  "8" + rpps("1000000004"),
	}
	b := directory.NewIndexBuilder()
	b.Add(directory.Practitioner{IDNat: ids["doctor"], LastName: "Martin", FirstName: "Anne", Active: true,
		Professions: []directory.Profession{{Code: "10", Label: "Médecin"}}})
	b.Add(directory.Practitioner{IDNat: ids["nurse"], LastName: "Durand", FirstName: "Paul", Active: true,
		Professions: []directory.Profession{{Code: "60", Label: "Infirmier"}}})
	b.Add(directory.Practitioner{IDNat: ids["inactive"], LastName: "Petit", FirstName: "Luc", Active: false,
		Professions: []directory.Profession{{Code: "10", Label: "Médecin"}}})
	var a directory.Atomic
	a.Swap(b.Build())
	return New("hub.test", &a, allowed), ids
}

func TestCheckUser(t *testing.T) {
	e, ids := engine(t, nil)
	onlyDoctors, _ := engine(t, []string{"10"})
	uid := func(lp string) id.UserID { return id.NewUserID(lp, "hub.test") }
	cases := []struct {
		name string
		e    *Engine
		user id.UserID
		want Code // "" = allowed
	}{
		{"active doctor", e, uid(ids["doctor"]), ""},
		{"active nurse", e, uid(ids["nurse"]), ""},
		{"inactive", e, uid(ids["inactive"]), InactivePractitioner},
		{"not in directory", e, uid(ids["unknown"]), NotInDirectory},
		{"not an idNat", e, uid("alice"), NotAPractitionerID},
		{"bad check digit", e, uid(ids["doctor"][:11] + fmt.Sprint((int(ids["doctor"][11]-'0')+1)%10)), NotAPractitionerID},
		{"other server", e, id.NewUserID(ids["doctor"], "elsewhere.example"), ForeignServer},
		{"profession not allowed", onlyDoctors, uid(ids["nurse"]), ProfessionNotAllowed},
		{"profession allowed", onlyDoctors, uid(ids["doctor"]), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.e.CheckUser(c.user)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			r, ok := AsRefusal(err)
			if !ok || r.Code != c.want {
				t.Fatalf("got %v, want %s", err, c.want)
			}
			if r.Error() == "" || messages[r.Code] == "" {
				t.Fatal("every code needs a human message")
			}
		})
	}
}

func TestDenyWhenDirectoryNotLoaded(t *testing.T) {
	var empty directory.Atomic
	e := New("hub.test", &empty, nil)
	err := e.CheckPractitioner("8" + rpps("1000000001"))
	if r, ok := AsRefusal(err); !ok || r.Code != DirectoryUnavailable {
		t.Fatalf("got %v, want %s", err, DirectoryUnavailable)
	}
	if _, ok := AsRefusal(fmt.Errorf("wrapped: %w", err)); !ok {
		t.Fatal("a wrapped refusal must still be recognised")
	}
	if _, ok := AsRefusal(errors.New("db down")); ok {
		t.Fatal("a plain error is not a refusal")
	}
}

func TestEveryCodeHasAMessage(t *testing.T) {
	for _, c := range []Code{NotAPractitionerID, NotInDirectory, InactivePractitioner, ProfessionNotAllowed, DirectoryUnavailable, ForeignServer} {
		if messages[c] == "" {
			t.Errorf("%s has no message", c)
		}
	}
}

// BenchmarkCheckUser: a whole policy decision (user ID parse, idNat
// check digit, index look-up), which the issue wants well under 1 µs.
func BenchmarkCheckUser(b *testing.B) {
	e, ids := engine(b, []string{"10", "60"})
	u := id.NewUserID(ids["doctor"], "hub.test")
	b.ReportAllocs()
	for b.Loop() {
		if err := e.CheckUser(u); err != nil {
			b.Fatal(err)
		}
	}
}

func TestServiceAccounts(t *testing.T) {
	e, ids := engine(t, nil)
	e.SetServiceAccounts([]store.ServiceAccount{
		{Localpart: "cardio-chu", Kind: store.KindOrganisational, Name: "Cardiologie CHU", ResponsibleIDNat: ids["doctor"]},
		{Localpart: "lab-results", Kind: store.KindApplicative, Name: "Laboratoire", ResponsibleIDNat: ids["inactive"]},
		{Localpart: "ops", Kind: store.KindAdmin, Name: "Exploitation"},
	})
	uid := func(lp string) id.UserID { return id.NewUserID(lp, "hub.test") }
	cases := []struct {
		user       string
		want       Code
		loginWant  Code
		definite   bool
		wantName   string
		nameListed bool
	}{
		{"cardio-chu", "", "", false, "Cardiologie CHU", true},
		{"lab-results", ResponsibleRefused, ResponsibleRefused, true, "Laboratoire", true},
		{"ops", AdminAccount, "", false, "Exploitation", true},
		{"someone", NotAPractitionerID, NotAPractitionerID, false, "", false},
		{ids["doctor"], "", "", false, "Anne Martin - Médecin", true},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			check := func(what string, err error, want Code) {
				t.Helper()
				if want == "" {
					if err != nil {
						t.Fatalf("%s refused: %v", what, err)
					}
					return
				}
				r, ok := AsRefusal(err)
				if !ok || r.Code != want {
					t.Fatalf("%s: got %v, want %s", what, err, want)
				}
			}
			check("CheckUser", e.CheckUser(uid(c.user)), c.want)
			check("CheckLogin", e.CheckLogin(uid(c.user)), c.loginWant)
			if r, ok := AsRefusal(e.CheckUser(uid(c.user))); ok && r.Definite() != c.definite {
				t.Fatalf("Definite() = %v", r.Definite())
			}
			name, ok := e.DisplayName(uid(c.user))
			if ok != c.nameListed || name != c.wantName {
				t.Fatalf("DisplayName = %q, %v", name, ok)
			}
		})
	}
	// Deny when unsure: without a directory even a registered service
	// account is refused, and not definitely (nobody is removed for it).
	var empty directory.Atomic
	e2 := New("hub.test", &empty, nil)
	e2.SetServiceAccounts([]store.ServiceAccount{{Localpart: "cardio-chu", Kind: store.KindOrganisational, Name: "C", ResponsibleIDNat: ids["doctor"]}})
	r, ok := AsRefusal(e2.CheckUser(uid("cardio-chu")))
	if !ok || r.Code != DirectoryUnavailable || r.Definite() {
		t.Fatalf("got %v", r)
	}
}
