package psc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testClientID     = "eimis-hub"
	testClientSecret = "s3cret"
	testRedirect     = "https://hub.example/_matrix/client/v3/login/sso/callback"
	testClientReturn = "https://app.element.example/#/home"
	// Valid RPPS (Luhn) from the public directory extract.
	testIDNat = "810001045367"
)

// grant is what the fake provider remembers between /authorize and /token.
type grant struct {
	nonce, challenge, acr, redirect string
}

// fakeOP is a minimal OpenID provider shaped like Pro Santé Connect.
// Fields after mu are switches the tests flip to make it misbehave.
type fakeOP struct {
	t       *testing.T
	srv     *httptest.Server
	key     *rsa.PrivateKey
	mu      sync.Mutex
	grants  map[string]grant
	access  map[string]bool
	lastReq url.Values // last /authorize query

	userinfoJWT      bool
	userinfoKey      *rsa.PrivateKey // signs userinfo JWTs; nil means key
	acr              string          // acr put in ID tokens; "" means what was asked
	nonceOverride    string
	corruptChallenge bool
	audience         string
	claims           map[string]any
	pkceFailures     int
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	op := &fakeOP{
		t:        t,
		key:      key,
		grants:   map[string]grant{},
		access:   map[string]bool{},
		audience: testClientID,
		claims: map[string]any{
			"sub":                "f:550dc1c8:" + testIDNat,
			"SubjectNameID":      testIDNat,
			"preferred_username": testIDNat,
			"given_name":         "ERIC",
			"family_name":        "GUIGNARD",
			"SubjectRefPro": map[string]any{
				"codeCivilite": "M",
				"exercices": []any{
					map[string]any{
						"codeProfession":               "10",
						"codeCategorieProfessionnelle": "C",
						"nomDExercice":                 "GUIGNARD",
						"prenomDExercice":              "ERIC",
						"activities": []any{map[string]any{
							"numeroFinessSite":     "750712184",
							"raisonSocialeSite":    "HOPITAL TEST",
							"codeSecteurDActivite": "SA01",
						}},
					},
					map[string]any{"codeProfession": "10"},
					map[string]any{"codeProfession": "21"},
				},
			},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", op.discovery)
	mux.HandleFunc("GET /jwks", op.jwks)
	mux.HandleFunc("GET /authorize", op.authorize)
	mux.HandleFunc("POST /token", op.token)
	mux.HandleFunc("GET /userinfo", op.userinfo)
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func (op *fakeOP) discovery(w http.ResponseWriter, _ *http.Request) {
	u := op.srv.URL
	writeJSON(w, map[string]any{
		"issuer":                                u,
		"authorization_endpoint":                u + "/authorize",
		"token_endpoint":                        u + "/token",
		"userinfo_endpoint":                     u + "/userinfo",
		"jwks_uri":                              u + "/jwks",
		"response_types_supported":              []string{"code"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"userinfo_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (op *fakeOP) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &op.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig",
	}}})
}

// authorize approves at once, as if the professional had used their CPS card.
func (op *fakeOP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != testClientID || q.Get("response_type") != "code" ||
		q.Get("code_challenge_method") != "S256" || q.Get("redirect_uri") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	g := grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), acr: q.Get("acr_values"), redirect: q.Get("redirect_uri")}
	op.mu.Lock()
	if op.corruptChallenge {
		g.challenge = s256("some other verifier")
	}
	code := rand.Text()
	op.grants[code] = g
	op.lastReq = q
	op.mu.Unlock()

	back, _ := url.Parse(g.redirect)
	bq := back.Query()
	bq.Set("code", code)
	bq.Set("state", q.Get("state"))
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (op *fakeOP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != testClientID || secret != testClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		writeJSON(w, map[string]string{"error": "invalid_client"})
		return
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	code := r.PostForm.Get("code")
	g, ok := op.grants[code]
	delete(op.grants, code)
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("redirect_uri") != g.redirect {
		oauthError(w, "invalid_grant")
		return
	}
	if s256(r.PostForm.Get("code_verifier")) != g.challenge {
		op.pkceFailures++
		oauthError(w, "invalid_grant")
		return
	}
	nonce := g.nonce
	if op.nonceOverride != "" {
		nonce = op.nonceOverride
	}
	acr := g.acr
	if op.acr != "" {
		acr = op.acr
	}
	now := time.Now()
	idt := op.sign(op.key, map[string]any{
		"iss":   op.srv.URL,
		"sub":   op.claims["sub"],
		"aud":   op.audience,
		"exp":   now.Add(5 * time.Minute).Unix(),
		"iat":   now.Unix(),
		"nonce": nonce,
		"acr":   acr,
	})
	at := rand.Text()
	op.access[at] = true
	writeJSON(w, map[string]any{
		"access_token": at, "token_type": "Bearer", "expires_in": 300, "id_token": idt,
	})
}

func (op *fakeOP) userinfo(w http.ResponseWriter, r *http.Request) {
	at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	op.mu.Lock()
	defer op.mu.Unlock()
	if !ok || !op.access[at] {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !op.userinfoJWT {
		writeJSON(w, op.claims)
		return
	}
	claims := map[string]any{"iss": op.srv.URL, "aud": testClientID}
	for k, v := range op.claims {
		claims[k] = v
	}
	key := op.key
	if op.userinfoKey != nil {
		key = op.userinfoKey
	}
	w.Header().Set("Content-Type", "application/jwt")
	io.WriteString(w, op.sign(key, claims))
}

func (op *fakeOP) sign(key *rsa.PrivateKey, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		op.t.Error(err)
		return ""
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		op.t.Error(err)
		return ""
	}
	s, _ := jws.CompactSerialize()
	return s
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, code string) {
	w.WriteHeader(http.StatusBadRequest)
	writeJSON(w, map[string]string{"error": code})
}

func newProvider(t *testing.T, op *fakeOP, mod func(*Config)) *Provider {
	t.Helper()
	cfg := Config{
		Issuer:       op.srv.URL,
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
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
	op := newFakeOP(t)
	p := newProvider(t, op, nil)
	authURL, state, err := p.Start(testClientReturn)
	if err != nil {
		t.Fatal(err)
	}
	gotState, code := browse(t, authURL)

	q := op.lastReq
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
	op := newFakeOP(t)
	op.userinfoJWT = true
	p := newProvider(t, op, nil)
	id, back, err := login(t, p)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	checkIdentity(t, id, back)
}

func TestUserinfoJWTForgedSignature(t *testing.T) {
	op := newFakeOP(t)
	op.userinfoJWT = true
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	op.userinfoKey = other
	_, _, err = login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
}

func TestWrongACR(t *testing.T) {
	op := newFakeOP(t)
	op.acr = "eidas2"
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
	op := newFakeOP(t)
	op.nonceOverride = "nonce-of-another-login"
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrBadNonce) {
		t.Fatalf("err = %v, want ErrBadNonce", err)
	}
}

func TestWrongAudience(t *testing.T) {
	op := newFakeOP(t)
	op.audience = "another-client"
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
}

func TestUnknownState(t *testing.T) {
	op := newFakeOP(t)
	p := newProvider(t, op, nil)
	if _, _, err := p.Finish(t.Context(), "never-issued", "code"); !errors.Is(err, ErrUnknownState) {
		t.Fatalf("err = %v, want ErrUnknownState", err)
	}
}

func TestExpiredState(t *testing.T) {
	op := newFakeOP(t)
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
	op := newFakeOP(t)
	op.corruptChallenge = true
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrProvider) {
		t.Fatalf("err = %v, want ErrProvider", err)
	}
	if op.pkceFailures != 1 {
		t.Fatalf("provider saw %d PKCE failures, want 1", op.pkceFailures)
	}
}

func TestPreferredUsernameFallback(t *testing.T) {
	op := newFakeOP(t)
	delete(op.claims, "SubjectNameID")
	id, _, err := login(t, newProvider(t, op, nil))
	if err != nil {
		t.Fatal(err)
	}
	if id.IDNat != testIDNat {
		t.Fatalf("IDNat = %q", id.IDNat)
	}
}

func TestBadIDNat(t *testing.T) {
	op := newFakeOP(t)
	delete(op.claims, "SubjectNameID")
	op.claims["preferred_username"] = "jdupont"
	_, _, err := login(t, newProvider(t, op, nil))
	if !errors.Is(err, ErrBadIDNat) {
		t.Fatalf("err = %v, want ErrBadIDNat", err)
	}
}

func TestProviderDown(t *testing.T) {
	op := newFakeOP(t)
	p := newProvider(t, op, nil)
	authURL, _, _ := p.Start(testClientReturn)
	state, code := browse(t, authURL)
	op.srv.Close()
	if _, _, err := p.Finish(t.Context(), state, code); !errors.Is(err, ErrProvider) {
		t.Fatalf("Finish: err = %v, want ErrProvider", err)
	}
	_, err := New(t.Context(), Config{Issuer: op.srv.URL, ClientID: testClientID, RedirectURL: testRedirect})
	if !errors.Is(err, ErrProvider) {
		t.Fatalf("New: err = %v, want ErrProvider", err)
	}
}

func TestIssuerMismatch(t *testing.T) {
	op := newFakeOP(t)
	_, err := New(context.Background(), Config{Issuer: op.srv.URL + "/other", ClientID: testClientID, RedirectURL: testRedirect})
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
