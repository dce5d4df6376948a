// Package psc logs health professionals in through Pro Santé Connect (PSC),
// the OpenID Connect provider of the French health sector, as the building
// block of Matrix m.login.sso.
//
// The Matrix wiring calls Start from /login/sso/redirect and sends the browser
// to the returned URL; the provider's callback hands state and code to Finish,
// which returns the verified professional and the Matrix client's redirectUrl.
package psc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/eimis-hub/eimis/internal/directory"
)

// Sentinel errors. Finish wraps them with detail meant for logs; ErrorPage
// shows users a generic message chosen from them.
var (
	// ErrUnknownState: the state is unknown, expired or already used. The
	// user should start the login again.
	ErrUnknownState = errors.New("psc: unknown, expired or reused login state")
	// ErrWrongACR: the provider authenticated the user with a weaker level
	// than requested (for PSC, not by CPS card or e-CPS).
	ErrWrongACR = errors.New("psc: authentication level (acr) not the one requested")
	// ErrBadNonce: the ID token does not belong to this login attempt, the
	// signature of a replayed or injected token.
	ErrBadNonce = errors.New("psc: ID token nonce does not match the login attempt")
	// ErrBadIDNat: the provider vouched for someone without a valid national
	// professional identifier, so the hub cannot bind an account to them.
	ErrBadIDNat = errors.New("psc: identity carries no valid idNat")
	// ErrInvalidToken: the ID token or a signed userinfo response failed
	// verification (signature, issuer, audience, expiry, subject).
	ErrInvalidToken = errors.New("psc: token from provider failed verification")
	// ErrProvider wraps failures to talk to the provider: discovery, network,
	// token or userinfo endpoint errors.
	ErrProvider = errors.New("psc: identity provider failure")
)

const (
	// attemptTTL bounds how long a user may spend at the provider: long
	// enough to find a CPS card or unlock the e-CPS app, short enough that a
	// stolen state is soon useless.
	attemptTTL = 10 * time.Minute
	// maxAttempts bounds memory used by unauthenticated Start calls.
	maxAttempts = 10000
	// maxUserinfoBytes keeps a misbehaving provider from filling memory; a
	// PSC profile is a few kilobytes.
	maxUserinfoBytes = 1 << 20
)

// Config configures a Provider. Endpoints are discovered from Issuer's
// .well-known/openid-configuration, because PSC has moved them before.
type Config struct {
	// Issuer is the exact issuer URL, e.g.
	// https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet.
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is the hub's own callback registered with PSC, not the
	// Matrix client's redirectUrl (that one is given to Start).
	RedirectURL string
	// Scopes defaults to "openid scope_all"; "openid" is added if missing.
	Scopes []string
	// ACRValues is sent as acr_values and, unless SkipACRCheck, must come
	// back as the ID token's acr. Defaults to "eidas1". Several
	// space-separated values are accepted as alternatives.
	ACRValues string
	// SkipACRCheck disables the acr check. The check is on by default: the
	// zero value of a "require" flag would silently turn it off, and a
	// missing check lets a weaker login method through.
	SkipACRCheck bool
	// HTTPClient is used for every call to the provider; nil means
	// http.DefaultClient. Set a timeout on it: a hanging provider otherwise
	// holds the login request open.
	HTTPClient *http.Client
}

// Identity is the professional PSC vouched for.
type Identity struct {
	// IDNat is the national identifier ("8" + RPPS or "0" + ADELI), already
	// checked with directory.ParseIDNat.
	IDNat      string
	GivenName  string
	FamilyName string
	// Professions are the distinct TRE_G15 profession codes of the
	// professional's practices (SubjectRefPro.exercices[].codeProfession),
	// in provider order.
	Professions []string
	// Subject is the ID token's sub.
	Subject string
	// Raw is the whole userinfo response, for data this type does not map
	// yet (activities, FINESS, sectors).
	Raw map[string]any
}

// Provider runs PSC logins. It is safe for concurrent use.
type Provider struct {
	oauth       oauth2.Config
	verifier    *oidc.IDTokenVerifier
	keys        oidc.KeySet
	issuer      string
	clientID    string
	userinfoURL string
	userinfoAlg []jose.SignatureAlgorithm
	acrValues   string
	checkACR    bool
	client      *http.Client
	attempts    *attemptStore
}

// discovery holds the metadata go-oidc does not expose directly.
type discovery struct {
	JWKSURI      string   `json:"jwks_uri"`
	UserinfoURL  string   `json:"userinfo_endpoint"`
	IDTokenAlgs  []string `json:"id_token_signing_alg_values_supported"`
	UserinfoAlgs []string `json:"userinfo_signing_alg_values_supported"`
}

// New fetches the provider's discovery document. It fails if the document's
// issuer differs from cfg.Issuer, which guards against a misconfigured or
// spoofed discovery URL.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURL == "" {
		return nil, errors.New("psc: Issuer, ClientID and RedirectURL are required")
	}
	client := cfg.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "scope_all"}
	} else if !slices.Contains(scopes, oidc.ScopeOpenID) {
		// Without openid there is no ID token and so no nonce binding.
		scopes = append([]string{oidc.ScopeOpenID}, scopes...)
	}
	acr := strings.TrimSpace(cfg.ACRValues)
	if acr == "" {
		acr = "eidas1"
	}

	op, err := oidc.NewProvider(oidc.ClientContext(ctx, client), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery of %s: %w", ErrProvider, cfg.Issuer, err)
	}
	var meta discovery
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("%w: discovery document: %w", ErrProvider, err)
	}
	if meta.JWKSURI == "" || meta.UserinfoURL == "" {
		return nil, fmt.Errorf("%w: discovery lacks jwks_uri or userinfo_endpoint", ErrProvider)
	}

	// One key set for ID tokens and userinfo JWTs, so keys are fetched and
	// cached once. Its context only carries the HTTP client: key refreshes
	// happen long after New's ctx may be cancelled.
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), client), meta.JWKSURI)
	verifier := oidc.NewVerifier(cfg.Issuer, keys, &oidc.Config{
		ClientID:             cfg.ClientID,
		SupportedSigningAlgs: asymmetricAlgs(meta.IDTokenAlgs),
	})

	return &Provider{
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     op.Endpoint(),
			RedirectURL:  cfg.RedirectURL,
			Scopes:       scopes,
		},
		verifier:    verifier,
		keys:        keys,
		issuer:      cfg.Issuer,
		clientID:    cfg.ClientID,
		userinfoURL: meta.UserinfoURL,
		userinfoAlg: joseAlgs(asymmetricAlgs(meta.UserinfoAlgs)),
		acrValues:   acr,
		checkACR:    !cfg.SkipACRCheck,
		client:      client,
		attempts:    newAttemptStore(attemptTTL, maxAttempts, time.Now),
	}, nil
}

// asymmetricAlgs keeps the advertised algorithms go-oidc can verify with
// public keys, defaulting to RS256 (mandatory in OpenID Connect). Symmetric
// and "none" algorithms are dropped: a provider advertising them must not be
// able to make the hub accept tokens forged with the client secret or
// unsigned.
func asymmetricAlgs(advertised []string) []string {
	var out []string
	for _, a := range advertised {
		switch a {
		case oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
			oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA:
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = []string{oidc.RS256}
	}
	return out
}

func joseAlgs(algs []string) []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(algs))
	for i, a := range algs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}

// Start begins a login and returns the URL to send the browser to and the
// state that identifies the attempt. clientRedirect is the Matrix client's
// redirectUrl, handed back by Finish; the caller must have checked it is
// acceptable before calling Start.
func (p *Provider) Start(clientRedirect string) (authURL string, state string, err error) {
	a := &attempt{
		// rand.Text gives 128 bits: unguessable, so the state doubles as
		// CSRF protection for the callback.
		state:          rand.Text(),
		nonce:          rand.Text(),
		verifier:       oauth2.GenerateVerifier(),
		clientRedirect: clientRedirect,
	}
	p.attempts.put(a)
	authURL = p.oauth.AuthCodeURL(a.state,
		oidc.Nonce(a.nonce),
		oauth2.S256ChallengeOption(a.verifier),
		oauth2.SetAuthURLParam("acr_values", p.acrValues),
	)
	return authURL, a.state, nil
}

// Finish completes the login the provider's callback reports. The attempt is
// consumed before anything else, so whatever the outcome the same state can
// not be tried twice.
func (p *Provider) Finish(ctx context.Context, state, code string) (*Identity, string, error) {
	a, ok := p.attempts.take(state)
	if !ok {
		return nil, "", ErrUnknownState
	}
	if code == "" {
		return nil, "", fmt.Errorf("%w: callback without authorization code", ErrProvider)
	}
	ctx = oidc.ClientContext(ctx, p.client)

	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		return nil, "", fmt.Errorf("%w: code exchange: %w", ErrProvider, err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, "", fmt.Errorf("%w: token response without id_token", ErrInvalidToken)
	}
	idt, err := p.verifier.Verify(ctx, rawID)
	if err != nil {
		return nil, "", fmt.Errorf("%w: id token: %w", ErrInvalidToken, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(a.nonce)) != 1 {
		return nil, "", ErrBadNonce
	}
	if p.checkACR {
		var c struct {
			ACR string `json:"acr"`
		}
		if err := idt.Claims(&c); err != nil {
			return nil, "", fmt.Errorf("%w: id token claims: %w", ErrInvalidToken, err)
		}
		if !slices.Contains(strings.Fields(p.acrValues), c.ACR) {
			return nil, "", fmt.Errorf("%w: got %q, want %q", ErrWrongACR, c.ACR, p.acrValues)
		}
	}

	raw, err := p.userinfo(ctx, tok.AccessToken)
	if err != nil {
		return nil, "", err
	}
	// OpenID Connect Core 5.3.2: a userinfo response for another subject
	// must be rejected, or a mixed-up response could log in the wrong person.
	if sub, ok := raw["sub"].(string); ok && sub != idt.Subject {
		return nil, "", fmt.Errorf("%w: userinfo sub %q differs from id token sub %q", ErrInvalidToken, sub, idt.Subject)
	}
	id, err := identityFrom(raw)
	if err != nil {
		return nil, "", err
	}
	id.Subject = idt.Subject
	return id, a.clientRedirect, nil
}

// userinfo fetches the profile claims, which PSC keeps out of the ID token.
// PSC may answer with plain JSON or with a signed JWT; the JWT is verified
// with the provider's published keys.
func (p *Provider) userinfo(ctx context.Context, accessToken string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.userinfoURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo request: %w", ErrProvider, err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json, application/jwt")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo: %w", ErrProvider, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserinfoBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo body: %w", ErrProvider, err)
	}
	if len(body) > maxUserinfoBytes {
		return nil, fmt.Errorf("%w: userinfo larger than %d bytes", ErrProvider, maxUserinfoBytes)
	}
	if resp.StatusCode != http.StatusOK {
		// The body is left out: it may echo tokens into logs.
		return nil, fmt.Errorf("%w: userinfo status %s", ErrProvider, resp.Status)
	}

	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	signed := mt == "application/jwt"
	if signed {
		if body, err = p.verifyUserinfoJWT(ctx, strings.TrimSpace(string(body))); err != nil {
			return nil, err
		}
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: userinfo is not a JSON object: %w", ErrProvider, err)
	}
	if signed {
		if err := p.checkSignedUserinfo(raw); err != nil {
			return nil, err
		}
	}
	return raw, nil
}

// verifyUserinfoJWT restricts algorithms before handing the token to the key
// set, which on its own would accept any asymmetric algorithm.
// Encrypted (JWE) userinfo is not supported: PSC clients do not register an
// encryption key by default.
func (p *Provider) verifyUserinfoJWT(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, p.userinfoAlg)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo jwt: %w", ErrInvalidToken, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: userinfo jwt must carry exactly one signature", ErrInvalidToken)
	}
	payload, err := p.keys.VerifySignature(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo jwt signature: %w", ErrInvalidToken, err)
	}
	return payload, nil
}

// checkSignedUserinfo applies OpenID Connect Core 5.3.2: iss and aud, when a
// signed response carries them, must name this provider and this client, so
// a userinfo JWT issued for another relying party cannot be replayed here.
func (p *Provider) checkSignedUserinfo(raw map[string]any) error {
	if iss, ok := raw["iss"]; ok && iss != p.issuer {
		return fmt.Errorf("%w: userinfo jwt iss %v", ErrInvalidToken, iss)
	}
	aud, ok := raw["aud"]
	if !ok {
		return nil
	}
	switch v := aud.(type) {
	case string:
		if v == p.clientID {
			return nil
		}
	case []any:
		if slices.Contains(v, any(p.clientID)) {
			return nil
		}
	}
	return fmt.Errorf("%w: userinfo jwt aud %v", ErrInvalidToken, aud)
}

// identityFrom maps PSC's userinfo claims.
func identityFrom(raw map[string]any) (*Identity, error) {
	str := func(k string) string {
		s, _ := raw[k].(string)
		return strings.TrimSpace(s)
	}
	id := &Identity{
		IDNat:      str("SubjectNameID"),
		GivenName:  str("given_name"),
		FamilyName: str("family_name"),
		Raw:        raw,
	}
	if id.IDNat == "" {
		id.IDNat = str("preferred_username")
	}
	if _, _, err := directory.ParseIDNat(id.IDNat); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadIDNat, err)
	}

	// Round-tripping through JSON is simpler than walking map[string]any and
	// tolerates the fields PSC adds over time.
	var ref struct {
		Exercices []struct {
			CodeProfession string `json:"codeProfession"`
		} `json:"exercices"`
	}
	if sr, ok := raw["SubjectRefPro"]; ok {
		b, err := json.Marshal(sr)
		if err == nil {
			err = json.Unmarshal(b, &ref)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: SubjectRefPro: %w", ErrProvider, err)
		}
	}
	for _, e := range ref.Exercices {
		c := strings.TrimSpace(e.CodeProfession)
		if c != "" && !slices.Contains(id.Professions, c) {
			id.Professions = append(id.Professions, c)
		}
	}
	return id, nil
}

// IdentityFromAccessToken asks the provider's userinfo endpoint who holds
// accessToken. A vendor's app that logged its user in with Pro Santé
// Connect hands its access token to the hub as proof, when binding the
// user to its bridge, that the practitioner did authenticate just now.
func (p *Provider) IdentityFromAccessToken(ctx context.Context, accessToken string) (*Identity, error) {
	ctx = oidc.ClientContext(ctx, p.client)
	raw, err := p.userinfo(ctx, accessToken)
	if err != nil {
		return nil, err
	}
	return identityFrom(raw)
}
