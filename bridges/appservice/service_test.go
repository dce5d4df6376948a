package appservice

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

type fixture struct {
	st      store.Store
	pol     *policy.Engine
	ids     *identity.Service
	svc     *Service
	doctor  string // an active practitioner
	retired string // an inactive one
	unknown string // a valid idNat absent from the directory
	// withdrawn counts the reloads that found a consent withdrawn.
	withdrawn int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st,
		doctor:  directory.IDNatFromRPPS(directory.SyntheticRPPS(1)),
		retired: directory.IDNatFromRPPS(directory.SyntheticRPPS(2)),
		unknown: directory.IDNatFromRPPS(directory.SyntheticRPPS(3)),
	}
	b := directory.NewIndexBuilder()
	b.Add(directory.Practitioner{IDNat: f.doctor, FirstName: "Anne", LastName: "Martin", Active: true,
		Professions: []directory.Profession{{Code: "10", Label: "Médecin"}}})
	b.Add(directory.Practitioner{IDNat: f.retired, FirstName: "Luc", LastName: "Petit", Active: false,
		Professions: []directory.Profession{{Code: "10", Label: "Médecin"}}})
	var dir directory.Atomic
	dir.Swap(b.Build())
	f.pol = policy.New(server, &dir, nil)
	f.ids = identity.New(st, server, bcrypt.MinCost)
	f.ids.SetAdmission(f.pol)
	f.svc = New(Config{ServerName: server, Store: st, Policy: f.pol, IDs: f.ids, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnConsentWithdrawn: func(context.Context) { f.withdrawn++ }})
	return f
}

func (f *fixture) add(t *testing.T, file string) (*Compiled, error) {
	t.Helper()
	reg, _, err := ParseRegistration([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	return Add(t.Context(), f.st, reg, AddOptions{ServerName: server, Responsible: f.doctor, Practitioners: f.pol})
}

// reload is what a running hub does: the keeper loads service accounts,
// the service its registrations.
func (f *fixture) reload(t *testing.T) {
	t.Helper()
	svc, err := f.st.ServiceAccounts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.pol.SetServiceAccounts(svc)
	if err := f.svc.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func withField(file, key, val string) string {
	var out []string
	for _, l := range strings.Split(file, "\n") {
		if strings.HasPrefix(l, key+":") {
			l = key + ": " + val
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestAddChecksAgainstOthers(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	c, err := f.add(t, mautrixFile)
	if err != nil {
		t.Fatal(err)
	}
	svc, _ := f.st.ServiceAccounts(ctx)
	if len(svc) != 2 || svc[0].Kind != store.KindApplicative || svc[0].ResponsibleIDNat != f.doctor {
		t.Fatalf("service accounts = %+v", svc)
	}
	for _, lp := range c.ServiceLocalparts() {
		if _, err := f.st.GetAccount(ctx, lp); err != nil {
			t.Fatalf("account %s not created: %v", lp, err)
		}
	}

	other := withField(withField(withField(mautrixFile, "id", "whatsapp2"), "as_token", strings.Repeat("x", 40)), "sender_localpart", "wa2")
	other = strings.Replace(other, "whatsappbot", "whatsapp2bot", 1)
	if _, err := f.add(t, other); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("overlapping exclusive namespace: %v", err)
	}
	if _, err := f.add(t, mautrixFile); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("same id: %v", err)
	}
	sameToken := withField(withField(mautrixFile, "id", "tg"), "sender_localpart", "tgsender")
	sameToken = strings.NewReplacer("whatsappbot", "tgbot", "whatsapp_", "tg_").Replace(sameToken)
	if _, err := f.add(t, sameToken); err == nil || !strings.Contains(err.Error(), "as_token") {
		t.Fatalf("same as_token: %v", err)
	}
	stealsBot := withField(withField(withField(mautrixFile, "id", "tg"), "as_token", strings.Repeat("t", 40)), "sender_localpart", "whatsappbot")
	stealsBot = strings.NewReplacer("^@whatsappbot", "^@tgbot", "whatsapp_", "tg_").Replace(stealsBot)
	if _, err := f.add(t, stealsBot); err == nil || !strings.Contains(err.Error(), "sender_localpart") {
		t.Fatalf("sender inside another's namespace: %v", err)
	}

	// Non-exclusive namespaces may overlap each other: they only say what
	// an appservice wants to hear about.
	watcher := "id: watcher\nurl: null\nas_token: " + strings.Repeat("w", 40) + "\nhs_token: " + strings.Repeat("v", 40) +
		"\nsender_localpart: watcher\nnamespaces:\n  rooms:\n    - regex: '!.*'\n      exclusive: false\n"
	if _, err := f.add(t, watcher); err != nil {
		t.Fatalf("non-exclusive rooms: %v", err)
	}
	watcher2 := strings.NewReplacer("watcher", "watcher2", strings.Repeat("w", 40), strings.Repeat("y", 40)).Replace(watcher)
	if _, err := f.add(t, watcher2); err != nil {
		t.Fatalf("two non-exclusive namespaces: %v", err)
	}

	retired := withField(withField(withField(mautrixFile, "id", "sig"), "as_token", strings.Repeat("s", 40)), "sender_localpart", "sigsender")
	retired = strings.NewReplacer("whatsappbot", "sigbot", "whatsapp_", "sig_").Replace(retired)
	reg, _, _ := ParseRegistration([]byte(retired))
	_, err = Add(ctx, f.st, reg, AddOptions{ServerName: server, Responsible: f.retired, Practitioners: f.pol})
	if r, ok := policy.AsRefusal(err); !ok || r.Code != policy.InactivePractitioner || !strings.Contains(err.Error(), "responsible") {
		t.Fatalf("inactive responsible: %v", err)
	}
}

func TestAuthenticateAndMasquerade(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	reg, _, _ := ParseRegistration([]byte(mautrixFile))
	if _, err := f.add(t, mautrixFile); err != nil {
		t.Fatal(err)
	}
	f.reload(t)

	if _, ok, _ := f.svc.Authenticate(ctx, "eimis_not-an-as-token", ""); ok {
		t.Fatal("an access token is not an appservice's")
	}
	s, ok, err := f.svc.Authenticate(ctx, reg.ASToken, "")
	if !ok || err != nil || s.UserID != "@Fq8r2KbLw0PzXc5MnV7sTy3Ju1Hg9DeA:hub.test" || s.Appservice != "whatsapp" || s.DeviceID != "" {
		t.Fatalf("as the sender: %+v %v %v", s, ok, err)
	}
	if s, _, err := f.svc.Authenticate(ctx, reg.ASToken, "@whatsappbot:hub.test"); err != nil || s.UserID != "@whatsappbot:hub.test" {
		t.Fatalf("as the bot: %+v %v", s, err)
	}

	puppet := id.UserID("@whatsapp_" + f.doctor + ":hub.test")
	wantForbidden := func(what string, err error, text string) {
		t.Helper()
		var re mautrix.RespError
		if !errors.As(err, &re) || re.ErrCode != "M_FORBIDDEN" || !strings.Contains(re.Err, text) {
			t.Fatalf("%s: %v, want M_FORBIDDEN %q", what, err, text)
		}
	}
	_, _, err = f.svc.Authenticate(ctx, reg.ASToken, puppet)
	wantForbidden("unregistered puppet", err, "has not registered")
	if !f.svc.Owns("whatsapp", puppet) {
		t.Fatal("the puppet is the appservice's to register")
	}
	// Without the doctor's consent to this appservice, no puppet of her.
	if _, err := f.ids.CreateAccount(ctx, puppet.Localpart(), "", false); err == nil {
		t.Fatal("puppet registered without consent")
	} else if r, ok := policy.AsRefusal(err); !ok || r.Code != policy.ConsentRequired {
		t.Fatalf("puppet registered without consent: %v", err)
	}
	doctorID := "@" + f.doctor + ":" + server
	if _, err := f.st.PutBinding(ctx, store.Binding{Kind: store.BindingAppservice, AppID: "whatsapp", UserID: doctorID, Proof: store.ProofSession}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ReloadConsents(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ids.CreateAccount(ctx, puppet.Localpart(), "", false); err != nil {
		t.Fatal(err)
	}
	if s, _, err := f.svc.Authenticate(ctx, reg.ASToken, puppet); err != nil || s.UserID != puppet {
		t.Fatalf("as the puppet: %+v %v", s, err)
	}
	acc, _ := f.st.GetAccount(ctx, puppet.Localpart())
	if acc.DisplayName != "Anne Martin - Médecin" {
		t.Fatalf("puppet display name = %q, want the directory's", acc.DisplayName)
	}

	// Withdrawn: refused again at once, and the hub is told.
	if _, err := f.st.DeleteBinding(ctx, store.BindingAppservice, "whatsapp", doctorID); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if ref, ok := policy.AsRefusal(f.pol.CheckUser(puppet)); !ok || ref.Code != policy.ConsentRequired || f.withdrawn != 1 {
		t.Errorf("after the withdrawal: %v, %d withdrawals noticed", ref, f.withdrawn)
	}
	if _, _, err := f.svc.Authenticate(ctx, reg.ASToken, puppet); err == nil {
		t.Error("the puppet still acts after the withdrawal")
	}

	_, _, err = f.svc.Authenticate(ctx, reg.ASToken, id.UserID("@"+f.doctor+":hub.test"))
	wantForbidden("the practitioner's own account", err, "cannot act as")
	_, _, err = f.svc.Authenticate(ctx, reg.ASToken, "@whatsapp_x:elsewhere.example")
	wantForbidden("another server", err, "cannot act as")

	// A puppet of someone the directory does not list cannot exist.
	_, err = f.ids.CreateAccount(ctx, "whatsapp_"+f.unknown, "", false)
	if r, ok := policy.AsRefusal(err); !ok || r.Code != policy.NotInDirectory {
		t.Fatalf("puppet of an unknown idNat: %v", err)
	}
	if as, ok := f.svc.Exclusive(id.UserID("@whatsapp_anything:hub.test")); !ok || as != "whatsapp" {
		t.Fatal("the namespace is exclusive")
	}

	// Removal: the token stops working and the puppets stop being anyone.
	n, err := Remove(ctx, f.st, server, "whatsapp")
	if err != nil || n != 0 {
		t.Fatalf("remove: %d %v", n, err)
	}
	f.reload(t)
	if _, ok, _ := f.svc.Authenticate(ctx, reg.ASToken, ""); ok {
		t.Fatal("a removed appservice's token still works")
	}
	if r, ok := policy.AsRefusal(f.pol.CheckUser(puppet)); !ok || r.Code != policy.NotAPractitionerID {
		t.Fatalf("puppet of a removed appservice: %v", r)
	}
	if _, err := Remove(ctx, f.st, server, "whatsapp"); err == nil {
		t.Fatal("removing twice must fail")
	}
}

func TestPing(t *testing.T) {
	f := newFixture(t)
	var gotAuth, gotBody string
	status := http.StatusOK
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/base/_matrix/app/v1/ping" {
			http.NotFound(w, r)
			return
		}
		gotAuth = r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN"}`))
	}))
	defer as.Close()
	reg, _, _ := ParseRegistration([]byte(withField(mautrixFile, "url", as.URL+"/base")))
	if _, err := Add(t.Context(), f.st, reg, AddOptions{ServerName: server, Responsible: f.doctor}); err != nil {
		t.Fatal(err)
	}
	f.reload(t)

	if _, err := f.svc.Ping(t.Context(), "whatsapp", "txn-1"); err != nil {
		t.Fatal(err)
	}
	if gotAuth != "Bearer "+reg.HSToken || gotBody != `{"transaction_id":"txn-1"}` {
		t.Fatalf("ping sent %q %q", gotAuth, gotBody)
	}
	status = http.StatusForbidden
	_, err := f.svc.Ping(t.Context(), "whatsapp", "")
	var re mautrix.RespError
	if !errors.As(err, &re) || re.ErrCode != "M_BAD_STATUS" || re.StatusCode != http.StatusBadGateway || re.ExtraData["status"] != http.StatusForbidden {
		t.Fatalf("bad status: %#v", err)
	}
	as.Close()
	_, err = f.svc.Ping(context.Background(), "whatsapp", "")
	if !errors.As(err, &re) || re.ErrCode != "M_CONNECTION_FAILED" {
		t.Fatalf("unreachable: %v", err)
	}
}
