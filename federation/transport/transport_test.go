package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/federation/keys"
	"github.com/eimis-hub/eimis/federation/transport"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

// allowList stands in for the federation list (tested in trustlist).
type allowList struct {
	mu sync.Mutex
	ok map[string]bool
}

func (a *allowList) allow(names ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ok == nil {
		a.ok = map[string]bool{}
	}
	for _, n := range names {
		a.ok[n] = true
	}
}

func (a *allowList) ServerAllowed(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ok[s] {
		return nil
	}
	return &operators.Refusal{Code: operators.CodeServerNotListed, Subject: s}
}

type recorder struct {
	mu   sync.Mutex
	refs []door.Refusal
}

func (r *recorder) Refused(_ context.Context, ref door.Refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs = append(r.refs, ref)
}

func (r *recorder) last() door.Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.refs) == 0 {
		return door.Refusal{}
	}
	return r.refs[len(r.refs)-1]
}

// peer is a federation server under test: a TLS listener on loopback
// whose server name is its address, with its key server, an echo route
// behind X-Matrix auth, its list, and a client.
type peer struct {
	name    string
	key     signingkey.Key
	list    *allowList
	ring    *keys.Ring
	keySrv  *keys.Server
	client  *federation.Client
	refused *recorder
	srv     *httptest.Server
	hits    atomic.Int64 // requests for its keys
	// published overrides the key response served (rotation tests).
	published atomic.Pointer[federation.ServerKeyResponse]
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	p := &peer{list: &allowList{}, refused: &recorder{}}
	var err error
	if p.key, err = signingkey.Generate(); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "eimis.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var h http.Handler
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_matrix/key/v2/server") {
			p.hits.Add(1)
			if pub := p.published.Load(); pub != nil {
				json.NewEncoder(w).Encode(pub)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	p.name = p.srv.Listener.Addr().String()
	if p.client, err = transport.NewClient(transport.ClientConfig{ServerName: p.name, Key: p.key, List: p.list, InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	p.ring = keys.NewRing(st, p.client, p.name, p.key)
	p.keySrv = &keys.Server{ServerName: p.name, Key: p.key, Ring: p.ring, List: p.list}
	auth := &transport.Authenticator{ServerName: p.name, List: p.list, Keys: p.ring, Refusals: p.refused}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		json.NewEncoder(w).Encode(map[string]string{"origin": fedctx.Origin(r.Context()), "door": door.From(r.Context()).String(), "body": string(body)})
	})
	routes := append(p.keySrv.Routes(), transport.VersionRoute("eimis-hub", "test"),
		fedctx.Route{Method: http.MethodGet, Pattern: "/_matrix/federation/v1/echo", Handler: echo},
		fedctx.Route{Method: http.MethodPut, Pattern: "/_matrix/federation/v1/echo/{txnID}", Handler: echo})
	if h, err = transport.Handler(auth, routes); err != nil {
		t.Fatal(err)
	}
	return p
}

type echoed struct{ Origin, Door, Body string }

func (p *peer) echo(ctx context.Context, to string, put bool) (echoed, error) {
	var out echoed
	params := federation.RequestParams{ServerName: to, Method: http.MethodGet, Path: federation.URLPath{"v1", "echo"},
		Authenticate: true, ResponseJSON: &out}
	if put {
		params.Method, params.Path, params.RequestJSON = http.MethodPut, federation.URLPath{"v1", "echo", "t1"}, map[string]any{"pdus": []any{}}
	}
	_, _, err := p.client.MakeFullRequest(ctx, params)
	return out, err
}

func codeOf(err error) string {
	var re mautrix.HTTPError
	if errors.As(err, &re) && re.RespError != nil {
		c, _ := re.RespError.ExtraData["eimis_code"].(string)
		return c
	}
	return ""
}

func TestXMatrixAuth(t *testing.T) {
	ctx := context.Background()
	a, b, c := newPeer(t), newPeer(t), newPeer(t)
	a.list.allow(b.name)
	b.list.allow(a.name, "localhost"+a.name[strings.LastIndex(a.name, ":"):])
	c.list.allow(a.name)

	// Accepted: GET and PUT with a body, origin and door in the context.
	for _, put := range []bool{false, true} {
		got, err := b.echo(ctx, a.name, put)
		if err != nil {
			t.Fatalf("accepted request (put=%v): %v", put, err)
		}
		if got.Origin != b.name || got.Door != "federation:"+b.name {
			t.Fatalf("origin %q door %q", got.Origin, got.Door)
		}
		if put && !strings.Contains(got.Body, `"pdus"`) {
			t.Fatalf("body not passed on: %q", got.Body)
		}
	}

	// Unlisted origin: refused before any key is fetched from it.
	_, err := c.echo(ctx, a.name, true)
	if codeOf(err) != string(operators.CodeServerNotListed) {
		t.Fatalf("unlisted origin: %v", err)
	}
	if n := c.hits.Load(); n != 0 {
		t.Fatalf("the hub fetched an unlisted origin's keys (%d requests)", n)
	}
	if r := a.refused.last(); r.Door.String() != "federation:"+c.name || r.Code != string(operators.CodeServerNotListed) {
		t.Fatalf("refusal recorded: %+v", r)
	}

	// Bad signature: b's name and key ID, another key.
	forger, _ := signingkey.Generate()
	forger.ID = b.key.ID
	fc, err := transport.NewClient(transport.ClientConfig{ServerName: b.name, Key: forger, List: b.list, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = fc.MakeFullRequest(ctx, federation.RequestParams{ServerName: a.name, Method: http.MethodGet,
		Path: federation.URLPath{"v1", "echo"}, Authenticate: true})
	if codeOf(err) != string(operators.CodeFedBadSignature) {
		t.Fatalf("forged signature: %v", err)
	}

	// Wrong destination: signed for localhost:<port>, which reaches a.
	wrong := "localhost" + a.name[strings.LastIndex(a.name, ":"):]
	if _, err := b.echo(ctx, wrong, false); codeOf(err) != string(operators.CodeFedWrongDestination) {
		t.Fatalf("wrong destination: %v", err)
	}

	// No authorization at all.
	resp, err := a.srv.Client().Get(a.srv.URL + "/_matrix/federation/v1/echo")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || body["eimis_code"] != string(operators.CodeFedAuthMissing) {
		t.Fatalf("no auth: %d %v", resp.StatusCode, body)
	}

	// Public routes need no auth.
	v, err := b.client.Version(ctx, a.name)
	if err != nil || v.Server.Name != "eimis-hub" {
		t.Fatalf("version: %+v %v", v, err)
	}
}

// The client never dials a server outside the list.
func TestClientRefusesUnlisted(t *testing.T) {
	a, b := newPeer(t), newPeer(t)
	_, err := a.client.Version(context.Background(), b.name)
	if !errors.Is(err, federation.ErrServerNameFiltered) {
		t.Fatalf("request to an unlisted server: %v", err)
	}
	if n := b.hits.Load(); n != 0 {
		t.Fatal("unlisted server was dialled")
	}
}

// Without the test switch, a self-signed peer is refused: certificates
// are verified.
func TestClientVerifiesCertificates(t *testing.T) {
	a, b := newPeer(t), newPeer(t)
	list := &allowList{}
	list.allow(b.name)
	c, err := transport.NewClient(transport.ClientConfig{ServerName: a.name, Key: a.key, List: list})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Version(context.Background(), b.name); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("self-signed peer accepted: %v", err)
	}
}

func TestKeyServerAndNotary(t *testing.T) {
	ctx := context.Background()
	a, b, c := newPeer(t), newPeer(t), newPeer(t)
	a.list.allow(b.name, c.name)
	b.list.allow(a.name)

	// GET /_matrix/key/v2/server: self-signed, this server's key.
	own, err := b.client.ServerKeys(ctx, a.name)
	if err != nil {
		t.Fatal(err)
	}
	if own.ServerName != a.name || !own.HasKey(id.KeyID(a.key.ID)) || own.VerifySelfSignature() != nil {
		t.Fatalf("own keys: %+v", own)
	}
	if !own.ValidUntilTS.After(time.Now()) {
		t.Fatal("own keys already expired")
	}

	// The notary answers about itself and listed servers, countersigned;
	// never about unlisted ones (c is listed but then removed below).
	other := newPeer(t)
	resp, err := b.client.QueryKeys(ctx, a.name, &federation.ReqQueryKeys{ServerKeys: map[string]map[id.KeyID]federation.QueryKeysCriteria{
		c.name: {}, other.name: {}, a.name: {},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*federation.ServerKeyResponse{}
	for _, r := range resp.ServerKeys {
		got[r.ServerName] = r
	}
	if _, ok := got[other.name]; ok || other.hits.Load() != 0 {
		t.Fatal("notary answered about (or dialled) an unlisted server")
	}
	cr, ok := got[c.name]
	if !ok {
		t.Fatalf("notary did not answer about a listed server: %v", got)
	}
	if err := cr.VerifySelfSignature(); err != nil {
		t.Fatalf("relayed response lost its origin signature: %v", err)
	}
	if err := signutil.VerifyJSON(a.name, id.KeyID(a.key.ID), id.SigningKey(a.key.PublicBase64()), cr.Raw); err != nil {
		t.Fatalf("notary signature: %v", err)
	}
	if _, ok := got[a.name]; !ok {
		t.Fatal("notary did not answer about itself")
	}
	// GET form.
	var one federation.QueryKeysResponse
	if err := b.client.MakeRequest(ctx, a.name, false, http.MethodGet, federation.KeyURLPath{"v2", "query", c.name}, nil, &one); err != nil {
		t.Fatal(err)
	}
	if len(one.ServerKeys) != 1 || one.ServerKeys[0].ServerName != c.name {
		t.Fatalf("GET query: %+v", one)
	}
}

// Keys are cached in the store, fetched again only when needed, and old
// keys keep verifying what they signed before they expired.
func TestRingCacheAndRotation(t *testing.T) {
	ctx := context.Background()
	a, b := newPeer(t), newPeer(t)
	a.list.allow(b.name)
	a.ring.MinRefetch = 0

	k1, until, err := a.ring.VerifyKey(ctx, b.name, id.KeyID(b.key.ID), time.Now())
	if err != nil || k1 != id.SigningKey(b.key.PublicBase64()) || !until.After(time.Now()) {
		t.Fatalf("first fetch: %v %v", k1, err)
	}
	if _, _, err := a.ring.VerifyKey(ctx, b.name, id.KeyID(b.key.ID), time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := b.hits.Load(); n != 1 {
		t.Fatalf("keys fetched %d times, want 1 (cached)", n)
	}

	// b rotates: a new key, the old one in old_verify_keys.
	expired := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	newKey, _ := signingkey.Generate()
	sk := &federation.SigningKey{ID: id.KeyID(newKey.ID), Pub: id.SigningKey(newKey.PublicBase64()), Priv: newKey.Private}
	rotated := sk.GenerateKeyResponse(b.name, map[id.KeyID]federation.OldVerifyKey{
		id.KeyID(b.key.ID): {Key: id.SigningKey(b.key.PublicBase64()), ExpiredTS: jsontime.UM(expired)},
	})
	b.published.Store(rotated)
	if _, _, err := a.ring.VerifyKey(ctx, b.name, id.KeyID(newKey.ID), time.Now()); err != nil {
		t.Fatalf("new key: %v", err)
	}
	// The old key verifies what it signed before it expired, not after.
	if _, _, err := a.ring.VerifyKey(ctx, b.name, id.KeyID(b.key.ID), expired.Add(-time.Hour)); err != nil {
		t.Fatalf("old key for an old event: %v", err)
	}
	if _, _, err := a.ring.VerifyKey(ctx, b.name, id.KeyID(b.key.ID), time.Now()); !errors.Is(err, keys.ErrNoKey) {
		t.Fatalf("old key for a new signature: %v", err)
	}
	// A key the server never published.
	if _, _, err := a.ring.VerifyKey(ctx, b.name, "ed25519:nope", time.Now()); !errors.Is(err, keys.ErrNoKey) {
		t.Fatalf("unknown key: %v", err)
	}
	// A response claiming to be another server's is refused.
	forged := sk.GenerateKeyResponse("evil.test", nil)
	if err := a.ring.Accept(ctx, b.name, forged); err == nil {
		t.Fatal("a response naming another server was accepted")
	}
	// KeyFunc has the room server's shape.
	if _, _, err := a.ring.KeyFunc()(b.name, id.KeyID(newKey.ID), time.Now()); err != nil {
		t.Fatal(err)
	}
}
