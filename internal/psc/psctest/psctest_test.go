package psctest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// These tests speak raw OAuth to the provider rather than going through
// internal/psc, which imports this package for its own tests.

const redirect = "https://hub.example/callback?keep=1"

// noFollow stops at the provider's redirect, which points at a hub that
// does not exist here.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

func getJSON(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil && resp.StatusCode == http.StatusOK {
		t.Fatalf("%s: %v", req.URL, err)
	}
	return resp.StatusCode, body
}

// authorize plays the browser and returns the query of the redirect back.
func authorize(t *testing.T, p *Provider, verifier, state string) url.Values {
	t.Helper()
	q := url.Values{
		"client_id":             {ClientID},
		"response_type":         {"code"},
		"redirect_uri":          {redirect},
		"scope":                 {"openid scope_all"},
		"state":                 {state},
		"nonce":                 {"n-0"},
		"acr_values":            {"eidas1"},
		"code_challenge":        {s256(verifier)},
		"code_challenge_method": {"S256"},
	}
	resp, err := noFollow.Get(p.URL() + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Host != "hub.example" || loc.Path != "/callback" || loc.Query().Get("keep") != "1" {
		t.Fatalf("redirected to %s, want the redirect_uri with its query kept", loc)
	}
	return loc.Query()
}

// exchange swaps code for an access token, checking the status.
func exchange(t *testing.T, p *Provider, code, verifier string, want int) string {
	t.Helper()
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirect},
		"code_verifier": {verifier},
	}
	req, _ := http.NewRequest(http.MethodPost, p.URL()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(ClientID, ClientSecret)
	status, body := getJSON(t, req)
	if status != want {
		t.Fatalf("token status %d (%v), want %d", status, body, want)
	}
	at, _ := body["access_token"].(string)
	return at
}

// login runs the whole flow and returns the userinfo claims.
func login(t *testing.T, p *Provider) map[string]any {
	t.Helper()
	back := authorize(t, p, "verifier-1", "st-1")
	if back.Get("state") != "st-1" || back.Get("code") == "" {
		t.Fatalf("redirect query = %v", back)
	}
	at := exchange(t, p, back.Get("code"), "verifier-1", http.StatusOK)
	req, _ := http.NewRequest(http.MethodGet, p.URL()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	status, claims := getJSON(t, req)
	if status != http.StatusOK {
		t.Fatalf("userinfo status %d", status)
	}
	return claims
}

func TestDiscovery(t *testing.T) {
	p := New(t)
	req, _ := http.NewRequest(http.MethodGet, p.URL()+"/.well-known/openid-configuration", nil)
	status, doc := getJSON(t, req)
	if status != http.StatusOK || doc["issuer"] != p.URL() {
		t.Fatalf("status %d, issuer %v, want %s", status, doc["issuer"], p.URL())
	}
	if doc["token_endpoint"] != p.URL()+"/token" {
		t.Errorf("token_endpoint = %v", doc["token_endpoint"])
	}
}

func TestDefaultClaims(t *testing.T) {
	p := New(t)
	c := login(t, p)
	if c["sub"] != SubjectPrefix+DefaultIDNat || c["SubjectNameID"] != DefaultIDNat ||
		c["given_name"] != "ERIC" || c["family_name"] != "GUIGNARD" {
		t.Errorf("claims = %v", c)
	}
	if got := professions(c); !reflect.DeepEqual(got, []string{"10", "10", "21"}) {
		t.Errorf("professions = %v, want [10 10 21]", got)
	}
	if q := p.LastAuthorizeQuery(); q.Get("acr_values") != "eidas1" || q.Get("state") != "st-1" {
		t.Errorf("last authorize query = %v", q)
	}
}

func TestSetIDNat(t *testing.T) {
	p := New(t)
	login(t, p)
	// Between logins, as a hub test switching professionals would.
	p.SetIDNat("10000000001")
	c := login(t, p)
	for _, k := range []string{"SubjectNameID", "preferred_username"} {
		if c[k] != "10000000001" {
			t.Errorf("%s = %v", k, c[k])
		}
	}
	if c["sub"] != SubjectPrefix+"10000000001" {
		t.Errorf("sub = %v", c["sub"])
	}
}

func TestSetNameAndProfessions(t *testing.T) {
	p := New(t)
	p.SetProfessions("40", "50")
	p.SetGivenFamilyName("ANNE", "MARTIN")
	c := login(t, p)
	if c["given_name"] != "ANNE" || c["family_name"] != "MARTIN" {
		t.Errorf("names = %v %v", c["given_name"], c["family_name"])
	}
	if got := professions(c); !reflect.DeepEqual(got, []string{"40", "50"}) {
		t.Errorf("professions = %v, want [40 50]", got)
	}
	for _, e := range exercices(c) {
		if e["prenomDExercice"] != "ANNE" || e["nomDExercice"] != "MARTIN" {
			t.Errorf("practice names not updated: %v", e)
		}
	}
	p.SetProfessions()
	if got := professions(p.Claims()); len(got) != 0 {
		t.Errorf("professions = %v, want none", got)
	}
}

func TestClaimsAreCopies(t *testing.T) {
	p := New(t)
	c := p.Claims()
	c["given_name"] = "MALLORY"
	exercices(c)[0]["codeProfession"] = "99"
	if got := p.Claims(); got["given_name"] != "ERIC" || professions(got)[0] != "10" {
		t.Fatalf("mutating Claims() changed the provider: %v", got)
	}
	p.SetClaims(c)
	c["given_name"] = "EVE"
	if got := p.Claims()["given_name"]; got != "MALLORY" {
		t.Fatalf("given_name = %v, want MALLORY", got)
	}
}

func TestDenyAuthorize(t *testing.T) {
	p := New(t)
	p.SetDenyAuthorize("access_denied")
	back := authorize(t, p, "v", "st-2")
	if back.Get("error") != "access_denied" || back.Get("state") != "st-2" || back.Has("code") {
		t.Fatalf("redirect query = %v, want error and state only", back)
	}
	p.SetDenyAuthorize("")
	if back := authorize(t, p, "v", "st-3"); back.Get("code") == "" || back.Has("error") {
		t.Fatalf("redirect query = %v, want a code again", back)
	}
}

func TestPKCE(t *testing.T) {
	p := New(t)
	back := authorize(t, p, "right", "st")
	exchange(t, p, back.Get("code"), "wrong", http.StatusBadRequest)
	if n := p.PKCEFailures(); n != 1 {
		t.Fatalf("PKCEFailures = %d, want 1", n)
	}
	// The code was burnt by the failed attempt.
	exchange(t, p, back.Get("code"), "right", http.StatusBadRequest)
}

func exercices(claims map[string]any) []map[string]any {
	ref, _ := claims["SubjectRefPro"].(map[string]any)
	list, _ := ref["exercices"].([]any)
	var out []map[string]any
	for _, e := range list {
		m, _ := e.(map[string]any)
		out = append(out, m)
	}
	return out
}

func professions(claims map[string]any) []string {
	var out []string
	for _, e := range exercices(claims) {
		c, _ := e["codeProfession"].(string)
		out = append(out, c)
	}
	return out
}
