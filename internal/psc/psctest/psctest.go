// Package psctest runs a fake OpenID Connect provider shaped like Pro Santé
// Connect (PSC) for tests: discovery, JWKS, an /authorize endpoint that
// approves at once as if the professional had used their CPS card, /token
// with PKCE, and /userinfo as JSON or as a signed JWT.
//
// It lives in its own package so that the psc package's unit tests and the
// hub's end-to-end tests log in against the same provider. It must not
// import internal/psc: psc's tests import it, and the cycle would not build.
//
// Setters may be called while the server runs; they take effect from the
// next request, which lets a test change the professional between logins.
package psctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
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
	// ClientID and ClientSecret are the only client credentials the
	// provider accepts.
	ClientID     = "eimis-hub"
	ClientSecret = "s3cret"
	// DefaultIDNat is the professional every new Provider vouches for: a
	// valid RPPS (Luhn) from the public directory extract.
	DefaultIDNat = "810001045367"
	// SubjectPrefix precedes the idNat in sub, as PSC builds its subjects.
	SubjectPrefix = "f:550dc1c8:"

	// keyID names the single signing key in the JWKS and in token headers.
	keyID = "k1"
	// tokenLifetime is short like PSC's, and long enough for any test.
	tokenLifetime = 5 * time.Minute
)

// grant is what the provider remembers between /authorize and /token.
type grant struct {
	nonce, challenge, acr, redirect string
}

// Provider is a running fake PSC. Its zero value is not usable; call New.
type Provider struct {
	t   testing.TB
	srv *httptest.Server
	key *rsa.PrivateKey

	// mu guards everything below: handlers run on server goroutines while
	// the test flips knobs on its own.
	mu           sync.Mutex
	grants       map[string]grant // by authorization code
	access       map[string]bool  // issued access tokens
	lastReq      url.Values       // last /authorize query
	pkceFailures int

	userinfoJWT      bool
	userinfoKey      *rsa.PrivateKey // signs userinfo JWTs; nil means key
	acr              string          // acr put in ID tokens; "" means what was asked
	nonceOverride    string
	corruptChallenge bool
	audience         string
	denyAuthorize    string // OAuth error code /authorize answers with; "" approves
	claims           map[string]any
}

// New starts a provider that lives until t ends.
func New(t testing.TB) *Provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{
		t:        t,
		key:      key,
		grants:   map[string]grant{},
		access:   map[string]bool{},
		audience: ClientID,
		claims:   defaultClaims(),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// defaultClaims is the userinfo of DefaultIDNat, trimmed from a real PSC
// response: one detailed practice and two more, one repeating a profession
// so that consumers' de-duplication gets exercised.
func defaultClaims() map[string]any {
	return map[string]any{
		"sub":                SubjectPrefix + DefaultIDNat,
		"SubjectNameID":      DefaultIDNat,
		"preferred_username": DefaultIDNat,
		"given_name":         "ERIC",
		"family_name":        "GUIGNARD",
		"SubjectRefPro": map[string]any{
			"codeCivilite": "M",
			"exercices": []any{
				exercice("10", "ERIC", "GUIGNARD"),
				map[string]any{"codeProfession": "10"},
				map[string]any{"codeProfession": "21"},
			},
		},
	}
}

// exercice is one detailed practice at the test hospital.
func exercice(profession, given, family string) map[string]any {
	return map[string]any{
		"codeProfession":               profession,
		"codeCategorieProfessionnelle": "C",
		"nomDExercice":                 family,
		"prenomDExercice":              given,
		"activities": []any{map[string]any{
			"numeroFinessSite":     "750712184",
			"raisonSocialeSite":    "HOPITAL TEST",
			"codeSecteurDActivite": "SA01",
		}},
	}
}

// URL is the issuer, also the base of every endpoint.
func (p *Provider) URL() string { return p.srv.URL }

// Close stops the server before t ends, to simulate PSC being down.
func (p *Provider) Close() { p.srv.Close() }

// SetIDNat makes the provider vouch for idnat. PSC repeats it in sub,
// SubjectNameID and preferred_username; changing one alone would describe
// an identity PSC never returns.
func (p *Provider) SetIDNat(idnat string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claims["sub"] = SubjectPrefix + idnat
	p.claims["SubjectNameID"] = idnat
	p.claims["preferred_username"] = idnat
}

// SetGivenFamilyName renames the professional, in the top-level claims and
// in every practice that carries a name, as PSC does.
func (p *Provider) SetGivenFamilyName(given, family string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claims["given_name"] = given
	p.claims["family_name"] = family
	for _, e := range p.exercices() {
		if _, ok := e["prenomDExercice"]; ok {
			e["prenomDExercice"] = given
		}
		if _, ok := e["nomDExercice"]; ok {
			e["nomDExercice"] = family
		}
	}
}

// SetProfessions replaces SubjectRefPro.exercices with one detailed
// practice per TRE_G15 profession code, in order; duplicates are kept so a
// test can check that consumers remove them. No codes leaves an empty list.
func (p *Provider) SetProfessions(codes ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	given, _ := p.claims["given_name"].(string)
	family, _ := p.claims["family_name"].(string)
	ex := make([]any, 0, len(codes))
	for _, c := range codes {
		ex = append(ex, exercice(c, given, family))
	}
	ref, ok := p.claims["SubjectRefPro"].(map[string]any)
	if !ok {
		ref = map[string]any{}
		p.claims["SubjectRefPro"] = ref
	}
	ref["exercices"] = ex
}

// exercices returns the practices as maps, skipping anything else a test
// may have put there. The caller holds mu.
func (p *Provider) exercices() []map[string]any {
	ref, _ := p.claims["SubjectRefPro"].(map[string]any)
	list, _ := ref["exercices"].([]any)
	var out []map[string]any
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Claims returns a copy of the userinfo claims; changing it does not change
// the provider.
func (p *Provider) Claims() map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return deepCopy(p.claims).(map[string]any)
}

// SetClaims replaces all userinfo claims with a copy of claims. The ID
// token's sub is taken from the "sub" claim.
func (p *Provider) SetClaims(claims map[string]any) {
	c, _ := deepCopy(claims).(map[string]any)
	if c == nil {
		c = map[string]any{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claims = c
}

// SetClaim sets one top-level userinfo claim.
func (p *Provider) SetClaim(name string, value any) {
	v := deepCopy(value)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claims[name] = v
}

// DeleteClaim removes one top-level userinfo claim, e.g. to test a
// fallback when PSC leaves a claim out.
func (p *Provider) DeleteClaim(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.claims, name)
}

// deepCopy copies the JSON-shaped containers claims are built from, so the
// provider and the test never share a map a handler may be encoding.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if v == nil {
			return v
		}
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		if v == nil {
			return v
		}
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = deepCopy(e)
		}
		return s
	case []string:
		return append([]string(nil), v...)
	default:
		return v
	}
}

// SetACR sets the acr put in ID tokens; "" echoes the acr_values asked for,
// as PSC does when the professional used the requested method.
func (p *Provider) SetACR(acr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acr = acr
}

// SetNonceOverride puts nonce in ID tokens instead of the one asked for,
// to simulate a token injected from another login; "" stops it.
func (p *Provider) SetNonceOverride(nonce string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nonceOverride = nonce
}

// SetUserinfoJWT makes /userinfo answer with a signed JWT, as PSC does in
// production, instead of plain JSON.
func (p *Provider) SetUserinfoJWT(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.userinfoJWT = on
}

// SetUserinfoKey signs userinfo JWTs with key, which is not in the JWKS,
// to simulate a forged response; nil goes back to the provider's key.
func (p *Provider) SetUserinfoKey(key *rsa.PrivateKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.userinfoKey = key
}

// SetAudience sets the ID token's aud, ClientID by default, to simulate a
// token issued to another client.
func (p *Provider) SetAudience(aud string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.audience = aud
}

// SetCorruptChallenge makes /authorize remember a code challenge that no
// verifier the client holds matches, so /token fails its PKCE check.
func (p *Provider) SetCorruptChallenge(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.corruptChallenge = on
}

// SetDenyAuthorize makes /authorize redirect back with error=errCode and
// the state instead of a code, as PSC does when the professional cancels
// ("access_denied") or the login fails; "" approves again.
func (p *Provider) SetDenyAuthorize(errCode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.denyAuthorize = errCode
}

// LastAuthorizeQuery returns a copy of the query of the last well-formed
// /authorize request, or nil if none came.
func (p *Provider) LastAuthorizeQuery() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastReq == nil {
		return nil
	}
	q := make(url.Values, len(p.lastReq))
	for k, v := range p.lastReq {
		q[k] = slices.Clone(v)
	}
	return q
}

// PKCEFailures counts /token requests rejected because the code verifier
// did not match the challenge.
func (p *Provider) PKCEFailures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pkceFailures
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	u := p.srv.URL
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

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &p.key.PublicKey, KeyID: keyID, Algorithm: "RS256", Use: "sig",
	}}})
}

// authorize approves at once, as if the professional had used their CPS
// card, unless SetDenyAuthorize asked it to refuse.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	back, err := url.Parse(q.Get("redirect_uri"))
	// Requests PSC would reject are answered here, not at the client: a
	// broken redirect_uri must not receive anything (RFC 6749 §4.1.2.1).
	if err != nil || q.Get("redirect_uri") == "" || q.Get("client_id") != ClientID ||
		q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	// The redirect_uri is kept as sent: /token must get the same string back.
	g := grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), acr: q.Get("acr_values"), redirect: q.Get("redirect_uri")}
	bq := back.Query()
	p.mu.Lock()
	p.lastReq = q
	if p.denyAuthorize != "" {
		bq.Set("error", p.denyAuthorize)
	} else {
		if p.corruptChallenge {
			g.challenge = s256("some other verifier")
		}
		code := rand.Text()
		p.grants[code] = g
		bq.Set("code", code)
	}
	p.mu.Unlock()

	bq.Set("state", q.Get("state"))
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request")
		return
	}
	// PSC accepts client_secret_basic and client_secret_post.
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != ClientID || secret != ClientSecret {
		writeJSONStatus(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	code := r.PostForm.Get("code")
	g, ok := p.grants[code]
	// Codes are single use even when the exchange fails.
	delete(p.grants, code)
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("redirect_uri") != g.redirect {
		oauthError(w, "invalid_grant")
		return
	}
	if s256(r.PostForm.Get("code_verifier")) != g.challenge {
		p.pkceFailures++
		oauthError(w, "invalid_grant")
		return
	}
	nonce := g.nonce
	if p.nonceOverride != "" {
		nonce = p.nonceOverride
	}
	acr := g.acr
	if p.acr != "" {
		acr = p.acr
	}
	now := time.Now()
	idt := p.sign(p.key, map[string]any{
		"iss":   p.srv.URL,
		"sub":   p.claims["sub"],
		"aud":   p.audience,
		"exp":   now.Add(tokenLifetime).Unix(),
		"iat":   now.Unix(),
		"nonce": nonce,
		"acr":   acr,
	})
	at := rand.Text()
	p.access[at] = true
	writeJSON(w, map[string]any{
		"access_token": at, "token_type": "Bearer", "expires_in": int(tokenLifetime.Seconds()), "id_token": idt,
	})
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok || !p.access[at] {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !p.userinfoJWT {
		writeJSON(w, p.claims)
		return
	}
	// A signed userinfo is a JWT, so it carries iss and aud besides the
	// profile.
	claims := map[string]any{"iss": p.srv.URL, "aud": ClientID}
	maps.Copy(claims, p.claims)
	key := p.key
	if p.userinfoKey != nil {
		key = p.userinfoKey
	}
	w.Header().Set("Content-Type", "application/jwt")
	io.WriteString(w, p.sign(key, claims))
}

// sign runs on server goroutines, so it reports with Error: Fatal must
// only be called from the test's goroutine.
func (p *Provider) sign(key *rsa.PrivateKey, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", keyID))
	if err != nil {
		p.t.Error(err)
		return ""
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		p.t.Error(err)
		return ""
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		p.t.Error(err)
		return ""
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		p.t.Error(err)
		return ""
	}
	return s
}

// s256 is the PKCE S256 transform (RFC 7636 §4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

// writeJSONStatus sets the content type before the status: headers set
// after WriteHeader are silently dropped.
func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status line is already out; a failed write is the client's
	// problem to report.
	_ = json.NewEncoder(w).Encode(v)
}

// oauthError answers a token request with an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, code string) {
	writeJSONStatus(w, http.StatusBadRequest, map[string]string{"error": code})
}

// IssueAccessToken returns a valid access token for the current claims, as
// a vendor's app holds after its own Pro Santé Connect login; the hub may
// ask for it as a proof at bridge bind.
func (p *Provider) IssueAccessToken() string {
	at := rand.Text()
	p.mu.Lock()
	p.access[at] = true
	p.mu.Unlock()
	return at
}
