package policy

import (
	"regexp"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

func TestPuppets(t *testing.T) {
	e, ids := engine(t, nil)
	uid := func(lp string) id.UserID { return id.NewUserID(lp, "hub.test") }
	if err := e.SetPuppetNamespaces([]PuppetNamespace{
		{Appservice: "whatsapp", Pattern: regexp.MustCompile(`^@wa_(.*):hub\.test$`)},
		{Appservice: "signal", Pattern: regexp.MustCompile(`^@signal_([0-9a-f]+)_(?:[a-z]+):hub\.test$`)},
	}); err != nil {
		t.Fatal(err)
	}
	e.SetServiceAccounts([]store.ServiceAccount{
		{Localpart: "wa_bot", Kind: store.KindApplicative, Name: "WhatsApp bridge", ResponsibleIDNat: ids["doctor"]},
	})
	// The doctor consented to the WhatsApp bridge only, the nurse to the
	// Signal one; the inactive practitioner had consented too.
	e.SetPuppetConsents([]PuppetConsent{
		{Appservice: "whatsapp", IDNat: ids["doctor"]}, {Appservice: "signal", IDNat: ids["nurse"]},
		{Appservice: "whatsapp", IDNat: ids["inactive"]},
	})

	cases := []struct {
		name string
		user id.UserID
		want Code // "" = allowed
	}{
		{"puppet of an active doctor", uid("wa_" + ids["doctor"]), ""},
		{"puppet through another namespace", uid("signal_" + ids["nurse"] + "_x"), ""},
		{"puppet of an inactive practitioner, whatever their consent", uid("wa_" + ids["inactive"]), InactivePractitioner},
		{"puppet of a practitioner who consented to another appservice", uid("signal_" + ids["doctor"] + "_x"), ConsentRequired},
		{"puppet of a practitioner who consented to nothing", uid("wa_" + ids["nurse"]), ConsentRequired},
		{"puppet of someone not in the directory", uid("wa_" + ids["unknown"]), NotInDirectory},
		{"namespace user that names no idNat", uid("wa_alice"), NotAPractitionerID},
		{"outside every namespace", uid("telegram_" + ids["doctor"]), NotAPractitionerID},
		{"another server's user", id.NewUserID("wa_"+ids["doctor"], "elsewhere.example"), ForeignServer},
		{"the bridge bot is a service account, not a puppet", uid("wa_bot"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := e.CheckUser(c.user)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if lerr := e.CheckLogin(c.user); lerr != nil {
					t.Fatalf("login refused: %v", lerr)
				}
				return
			}
			if r, ok := AsRefusal(err); !ok || r.Code != c.want {
				t.Fatalf("got %v, want %s", err, c.want)
			}
			if r, _ := AsRefusal(e.CheckLogin(c.user)); r == nil || r.Code != c.want {
				t.Fatalf("login: got %v, want %s", r, c.want)
			}
		})
	}

	// The name shown is the practitioner's, from the directory: a bridge
	// cannot give its puppet another name.
	if name, ok := e.DisplayName(uid("wa_" + ids["doctor"])); !ok || name != "Anne Martin - Médecin" {
		t.Fatalf("puppet display name = %q, %v", name, ok)
	}
	if name, ok := e.DisplayName(uid("wa_bot")); !ok || name != "WhatsApp bridge" {
		t.Fatalf("bot display name = %q, %v", name, ok)
	}
	if _, ok := e.DisplayName(uid("wa_alice")); ok {
		t.Fatal("a namespace user naming no idNat has no directory name")
	}
	if name, ok := e.DisplayName(uid("signal_" + ids["doctor"] + "_x")); ok {
		t.Fatalf("a puppet without consent borrows the directory name %q", name)
	}

	// A revoked consent refuses the puppet at once, for good: the trust
	// keeper takes it out of its rooms.
	e.SetPuppetConsents([]PuppetConsent{{Appservice: "signal", IDNat: ids["nurse"]}})
	if r, ok := AsRefusal(e.CheckUser(uid("wa_" + ids["doctor"]))); !ok || r.Code != ConsentRequired || !r.Definite() {
		t.Fatalf("after the consent was revoked: %v", r)
	}
	if _, ok := e.DisplayName(uid("wa_" + ids["doctor"])); ok {
		t.Fatal("a puppet whose consent was revoked keeps the directory name")
	}
	// The practitioner's own account never needed the appservice's consent.
	if err := e.CheckUser(uid(ids["doctor"])); err != nil {
		t.Fatalf("the doctor's own account: %v", err)
	}

	idnat, as, ok, err := e.PuppetOf(uid("signal_" + ids["nurse"] + "_x"))
	if !ok || err != nil || idnat != ids["nurse"] || as != "signal" {
		t.Fatalf("PuppetOf = %q %q %v %v", idnat, as, ok, err)
	}

	// Removing the appservice removes its puppets from the trust space.
	if err := e.SetPuppetNamespaces(nil); err != nil {
		t.Fatal(err)
	}
	if r, ok := AsRefusal(e.CheckUser(uid("wa_" + ids["doctor"]))); !ok || r.Code != NotAPractitionerID {
		t.Fatalf("after removal: %v", r)
	}
}

func TestPuppetNamespaceNeedsOneCapture(t *testing.T) {
	e, _ := engine(t, nil)
	for _, re := range []string{`^@wa_.*:hub\.test$`, `^@(wa)_(.*):hub\.test$`} {
		if err := e.SetPuppetNamespaces([]PuppetNamespace{{Appservice: "x", Pattern: regexp.MustCompile(re)}}); err == nil {
			t.Errorf("%s accepted: it cannot name one idNat", re)
		}
	}
}

func BenchmarkCheckPuppet(b *testing.B) {
	e, ids := engine(b, nil)
	if err := e.SetPuppetNamespaces([]PuppetNamespace{
		{Appservice: "whatsapp", Pattern: regexp.MustCompile(`^@wa_(.*):hub\.test$`)},
	}); err != nil {
		b.Fatal(err)
	}
	e.SetPuppetConsents([]PuppetConsent{{Appservice: "whatsapp", IDNat: ids["doctor"]}})
	u := id.NewUserID("wa_"+ids["doctor"], "hub.test")
	for b.Loop() {
		if err := e.CheckUser(u); err != nil {
			b.Fatal(err)
		}
	}
}
