package psc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/psc/psctest"
)

const (
	testRedirect     = "https://hub.example/_matrix/client/v3/login/sso/callback"
	testClientReturn = "https://app.element.example/#/home"
	testIDNat        = psctest.DefaultIDNat
)

func newProvider(t *testing.T, op *psctest.Provider, mod func(*Config)) *Provider {
	t.Helper()
	cfg := Config{
		Issuer:       op.URL(),
		ClientID:     psctest.ClientID,
		ClientSecret: psctest.ClientSecret,
		RedirectURL:  testRedirect,
		HTTPClient:   &http.Client{Timeout: 5 * time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// browse plays the browser: follow the auth URL to the provider and read
// code and state off the redirect back to the hub, without following it.
func browse(t *testing.T, authURL string) (state, code string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("GET auth URL: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc.String(), testRedirect+"?") {
		t.Fatalf("redirected to %s, want the hub callback", loc)
	}
	return loc.Query().Get("state"), loc.Query().Get("code")
}

// login runs Start, the browser leg and Finish.
func login(t *testing.T, p *Provider) (*Identity, string, error) {
	t.Helper()
	authURL, state, err := p.Start(testClientReturn)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	gotState, code := browse(t, authURL)
	if gotState != state {
		t.Fatalf("state came back as %q, want %q", gotState, state)
	}
	return p.Finish(t.Context(), gotState, code)
}

func checkIdentity(t *testing.T, id *Identity, back string) {
	t.Helper()
	if back != testClientReturn {
		t.Errorf("client redirect = %q", back)
	}
	if id.IDNat != testIDNat || id.GivenName != "ERIC" || id.FamilyName != "GUIGNARD" {
		t.Errorf("identity = %+v", id)
	}
	if !slices.Equal(id.Professions, []string{"10", "21"}) {
		t.Errorf("professions = %v, want [10 21]", id.Professions)
	}
	if id.Subject != "f:550dc1c8:"+testIDNat {
		t.Errorf("subject = %q", id.Subject)
	}
	if _, ok := id.Raw["SubjectRefPro"]; !ok {
		t.Errorf("raw claims lack SubjectRefPro: %v", id.Raw)
	}
}

func TestLoginJSONUserinfo(t *testing.T) {
	op := psctest.New(t)
	p := newProvider(t, op, nil)
	authURL, state, err := p.Start(testClientReturn)
	if err != nil {
		t.Fatal(err)
	}
	gotState, code := browse(t, authURL)

	q := op.LastAuthorizeQuery()
	if q.Get("acr_values") != "eidas1" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") != state {
		t.Errorf("authorization request lacks PSC parameters: %v", q)
	}
	if !slices.Equal(strings.Fields(q.Get("scope")), []string{"openid", "scope_all"}) {
		t.Errorf("scope = %q", q.Get("scope"))
	}

	id, back, err := p.Finish(t.Context(), gotState, code)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	checkIdentity(t, id, back)

	// The same callback replayed must not log anyone in again.
	if _, _, err := p.Finish(t.Context(), gotState, code); !errors.Is(err, ErrUnknownState) {
		t.Errorf("replayed state: err = %v, want ErrUnknownState", err)
	}
}

func TestLoginJWTUserinfo(t *testing.T) {
	op := psctest.New(t)
	op.SetUserinfoJWT(true)
	p := newProvider(t, op, nil)
	id, back, err := login(t, p)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	checkIdentity(t, id, back)
}

func TestUserinfoJWTForgedSignature(t *testing.T) {
	op := psctest.New(t)
	op.SetUserinfoJWT(true)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	op.SetUserinfoKey(other)
	_, _, err = login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
}

func TestWrongACR(t *testing.T) {
	op := psctest.New(t)
	op.SetACR("eidas2")
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrWrongACR) {
		t.Fatalf("err = %v, want ErrWrongACR", err)
	}
	// The check can be switched off explicitly, e.g. for a sandbox.
	if _, _, err := login(t, newProvider(t, op, func(c *Config) { c.SkipACRCheck = true })); err != nil {
		t.Fatalf("with SkipACRCheck: %v", err)
	}
}

func TestBadNonce(t *testing.T) {
	op := psctest.New(t)
	op.SetNonceOverride("nonce-of-another-login")
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrBadNonce) {
		t.Fatalf("err = %v, want ErrBadNonce", err)
	}
}

func TestWrongAudience(t *testing.T) {
	op := psctest.New(t)
	op.SetAudience("another-client")
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
}

func TestUnknownState(t *testing.T) {
	op := psctest.New(t)
	p := newProvider(t, op, nil)
	if _, _, err := p.Finish(t.Context(), "never-issued", "code"); !errors.Is(err, ErrUnknownState) {
		t.Fatalf("err = %v, want ErrUnknownState", err)
	}
}

func TestExpiredState(t *testing.T) {
	op := psctest.New(t)
	p := newProvider(t, op, nil)
	now := time.Now()
	p.attempts.now = func() time.Time { return now }
	authURL, _, _ := p.Start(testClientReturn)
	state, code := browse(t, authURL)
	now = now.Add(attemptTTL + time.Second)
	if _, _, err := p.Finish(t.Context(), state, code); !errors.Is(err, ErrUnknownState) {
		t.Fatalf("err = %v, want ErrUnknownState", err)
	}
}

func TestPKCEMismatch(t *testing.T) {
	op := psctest.New(t)
	op.SetCorruptChallenge(true)
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrProvider) {
		t.Fatalf("err = %v, want ErrProvider", err)
	}
	if n := op.PKCEFailures(); n != 1 {
		t.Fatalf("provider saw %d PKCE failures, want 1", n)
	}
}

func TestPreferredUsernameFallback(t *testing.T) {
	op := psctest.New(t)
	op.DeleteClaim("SubjectNameID")
	id, _, err := login(t, newProvider(t, op, nil))
	if err != nil {
		t.Fatal(err)
	}
	if id.IDNat != testIDNat {
		t.Fatalf("IDNat = %q", id.IDNat)
	}
}

func TestBadIDNat(t *testing.T) {
	op := psctest.New(t)
	op.DeleteClaim("SubjectNameID")
	op.SetClaim("preferred_username", "jdupont")
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrBadIDNat) {
		t.Fatalf("err = %v, want ErrBadIDNat", err)
	}
}

func TestProviderDown(t *testing.T) {
	op := psctest.New(t)
	p := newProvider(t, op, nil)
	authURL, _, _ := p.Start(testClientReturn)
	state, code := browse(t, authURL)
	op.Close()
	if _, _, err := p.Finish(t.Context(), state, code); !errors.Is(err, ErrProvider) {
		t.Fatalf("Finish: err = %v, want ErrProvider", err)
	}
	_, err := New(t.Context(), Config{Issuer: op.URL(), ClientID: psctest.ClientID, RedirectURL: testRedirect})
	if !errors.Is(err, ErrProvider) {
		t.Fatalf("New: err = %v, want ErrProvider", err)
	}
}

func TestIssuerMismatch(t *testing.T) {
	op := psctest.New(t)
	_, err := New(context.Background(), Config{Issuer: op.URL() + "/other", ClientID: psctest.ClientID, RedirectURL: testRedirect})
	if err == nil {
		t.Fatal("New accepted a discovery document for another issuer")
	}
}

func TestStoreBounded(t *testing.T) {
	now := time.Now()
	s := newAttemptStore(time.Minute, 3, func() time.Time { return now })
	for _, st := range []string{"a", "b", "c", "d"} {
		s.put(&attempt{state: st})
	}
	if s.len() != 3 {
		t.Fatalf("len = %d, want 3", s.len())
	}
	if _, ok := s.take("a"); ok {
		t.Error("oldest attempt survived eviction")
	}
	if _, ok := s.take("b"); !ok {
		t.Error("attempt b lost")
	}
	now = now.Add(2 * time.Minute)
	s.put(&attempt{state: "e"})
	if s.len() != 1 {
		t.Fatalf("expired attempts not swept: len = %d", s.len())
	}
}

func TestErrorPage(t *testing.T) {
	cases := []struct {
		err    error
		status int
	}{
		{ErrUnknownState, http.StatusBadRequest},
		{ErrWrongACR, http.StatusForbidden},
		{ErrBadIDNat, http.StatusForbidden},
		{ErrBadNonce, http.StatusBadRequest},
		{ErrInvalidToken, http.StatusBadRequest},
		{ErrProvider, http.StatusBadGateway},
		{errors.New("boom"), http.StatusInternalServerError},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		wrapped := errors.Join(c.err, errors.New("secret internal detail <script>"))
		ErrorPage(rec, wrapped)
		body := rec.Body.String()
		if rec.Code != c.status {
			t.Errorf("%v: status %d, want %d", c.err, rec.Code, c.status)
		}
		if strings.Contains(body, "secret internal detail") || strings.Contains(body, "psc:") {
			t.Errorf("%v: page leaks error detail: %s", c.err, body)
		}
		if !strings.Contains(body, `lang="fr"`) || !strings.Contains(body, `lang="en"`) {
			t.Errorf("%v: page not bilingual: %s", c.err, body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("content type %q", ct)
		}
	}
}
