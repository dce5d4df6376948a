package gateway_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/store"
)

// refusals is a door.Recorder keeping what it is told.
type refusals struct {
	mu   sync.Mutex
	list []door.Refusal
}

func (r *refusals) Refused(_ context.Context, ref door.Refusal) {
	r.mu.Lock()
	r.list = append(r.list, ref)
	r.mu.Unlock()
}

func (r *refusals) all() []door.Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// consentEnv is a gateway whose binds need consent, wired as the hub
// wires it: a revocation reaches the live connection through OnChange.
type consentEnv struct {
	*env
	svc *consent.Service
	rec *refusals
}

func newConsentEnv(t *testing.T, adjust func(*consent.Config), mod func(*gateway.Config)) *consentEnv {
	t.Helper()
	ce := &consentEnv{rec: &refusals{}}
	var g *gateway.Gateway
	ce.env = newEnv(t, func(c *gateway.Config) {
		cfg := consent.Config{Store: c.Store, OnChange: func(ctx context.Context, ch consent.Change) {
			if ch.Action == audit.ActionBindingRevoke && ch.Binding.Kind == store.BindingBridge && g != nil {
				g.BindingRevoked(ctx, ch.Binding.AppID, id.UserID(ch.Binding.UserID))
			}
		}}
		if adjust != nil {
			adjust(&cfg)
		}
		ce.svc = consent.New(cfg)
		c.Consent, c.Refusals = ce.svc, ce.rec
		if mod != nil {
			mod(c)
		}
	})
	g = ce.g
	return ce
}

func (ce *consentEnv) code(t *testing.T, localpart string) string {
	t.Helper()
	lc, err := ce.svc.IssueLinkCode(t.Context(), id.NewUserID(localpart, server), door.Door{})
	if err != nil {
		t.Fatal(err)
	}
	return lc.Code
}

func (ce *consentEnv) binding(t *testing.T, localpart string) *store.Binding {
	t.Helper()
	b, err := ce.st.GetBinding(t.Context(), store.BindingBridge, "acme-app", "@"+localpart+":"+server)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBindConsent: a bind needs the practitioner's consent, shown with a
// link code they obtained; every refusal is typed and recorded.
func TestBindConsent(t *testing.T) {
	e := newConsentEnv(t, nil, nil)
	c := e.dial(t)
	c.hello(e.token)
	ctx := t.Context()
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")
	aliceID := "@" + alice + ":" + server

	// Without proof: refused, recorded, nothing done for her.
	f, _ := c.request(map[string]any{"type": "bind", "id": "none", "idnat": alice})
	if f.Type != "error" || f.Code != "EIMIS_CONSENT_REQUIRED" || !strings.Contains(f.Message, aliceID) {
		t.Fatalf("bind without proof: %s", f.raw)
	}
	if got := e.rec.all(); len(got) != 1 || got[0] != (door.Refusal{Door: door.Of(door.Bridge, "acme-app"),
		Code: "EIMIS_CONSENT_REQUIRED", Actor: "operator:acme", Action: audit.ActionBindingBind, Target: aliceID,
		RequestID: "none"}) {
		t.Fatalf("recorded refusals = %+v", got)
	}
	if e.binding(t, alice) != nil {
		t.Fatal("a refused bind left a binding")
	}
	if _, err := e.st.GetAccount(ctx, alice); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a bind without consent created an account: %v", err)
	}

	// Bob's code does not bind alice, and is not spent by trying.
	bobsCode := e.code(t, bob)
	if f, _ := c.request(map[string]any{"type": "bind", "id": "other", "idnat": alice, "link_code": bobsCode}); f.Code != "EIMIS_LINK_CODE_INVALID" || f.Field != "/link_code" {
		t.Fatalf("bind alice with bob's code: %s", f.raw)
	}

	// Her own code binds her, once.
	code := e.code(t, alice)
	var res struct {
		UserID string `json:"user_id"`
	}
	c.mustResult(map[string]any{"type": "bind", "id": "ok", "idnat": alice, "link_code": strings.ToLower(code)}, &res)
	if res.UserID != aliceID {
		t.Fatalf("bound %q", res.UserID)
	}
	if b := e.binding(t, alice); b == nil || b.Proof != store.ProofLinkCode {
		t.Fatalf("binding = %+v", b)
	}
	// Binding again needs no new proof: the consent stands.
	c.mustResult(map[string]any{"type": "bind", "id": "again", "idnat": alice}, nil)
	// After an unbind, the used code does not bring her back.
	c.mustResult(map[string]any{"type": "unbind", "id": "ub", "idnat": alice}, nil)
	if f, _ := c.request(map[string]any{"type": "bind", "id": "reuse", "idnat": alice, "link_code": code}); f.Code != "EIMIS_LINK_CODE_INVALID" {
		t.Fatalf("code used twice: %s", f.raw)
	}
	// Bob's code, untouched by the failed try, binds bob.
	c.mustResult(map[string]any{"type": "bind", "id": "bob", "idnat": bob, "link_code": bobsCode}, nil)

	codes := map[string]int{}
	for _, r := range e.rec.all() {
		codes[r.Code]++
		if r.Door.String() != "bridge:acme-app" || r.Action != audit.ActionBindingBind {
			t.Errorf("refusal recorded as %+v", r)
		}
	}
	if codes["EIMIS_CONSENT_REQUIRED"] != 1 || codes["EIMIS_LINK_CODE_INVALID"] != 2 {
		t.Errorf("recorded refusal codes = %v", codes)
	}
}

// TestBindWrongCodes: a bridge trying codes at random is stopped.
func TestBindWrongCodes(t *testing.T) {
	e := newConsentEnv(t, func(c *consent.Config) { c.MaxWrongCodes = 2 }, nil)
	c := e.dial(t)
	c.hello(e.token)
	alice := hubtest.Localpart("alice")
	code := e.code(t, alice)
	for _, wrong := range []string{"AAAA-AAAA", "BBBB-BBBB"} {
		if f, _ := c.request(map[string]any{"type": "bind", "id": wrong, "idnat": alice, "link_code": wrong}); f.Code != "EIMIS_LINK_CODE_INVALID" {
			t.Fatalf("wrong code: %s", f.raw)
		}
	}
	if f, _ := c.request(map[string]any{"type": "bind", "id": "right", "idnat": alice, "link_code": code}); f.Code != "EIMIS_LINK_CODE_ATTEMPTS" || f.Field != "/link_code" {
		t.Fatalf("right code after too many wrong ones: %s", f.raw)
	}
}

// TestBindInsecureOption: without consent, a bind works only under the
// insecure option, and the binding says so.
func TestBindInsecureOption(t *testing.T) {
	e := newConsentEnv(t, func(c *consent.Config) { c.BridgeInsecure = true }, nil)
	c := e.dial(t)
	c.hello(e.token)
	alice := hubtest.Localpart("alice")
	c.mustResult(map[string]any{"type": "bind", "id": "b", "idnat": alice}, nil)
	if b := e.binding(t, alice); b == nil || b.Proof != store.ProofInsecure {
		t.Fatalf("binding = %+v", b)
	}
}

// TestUnconsentedBindingsDropped: a binding made without consent (before
// consent was recorded, or in the insecure mode since left) is not
// honoured: at connection, the bridge gets user_revoked for it.
func TestUnconsentedBindingsDropped(t *testing.T) {
	e := newConsentEnv(t, nil, nil)
	ctx := t.Context()
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")
	for lp, proof := range map[string]string{alice: store.ProofLegacy, bob: store.ProofLinkCode} {
		if _, err := e.st.PutBinding(ctx, store.Binding{Kind: store.BindingBridge, AppID: "acme-app", UserID: "@" + lp + ":" + server, Proof: proof}); err != nil {
			t.Fatal(err)
		}
	}
	c := e.dial(t)
	w := c.hello(e.token)
	if want := []string{"@" + bob + ":" + server}; !slices.Equal(w.Users, want) {
		t.Fatalf("welcome users = %v, want %v", w.Users, want)
	}
	f := c.mustNext()
	if f.Type != "user_revoked" || f.Code != "EIMIS_CONSENT_REQUIRED" || !strings.Contains(string(f.raw), alice) {
		t.Fatalf("push: %s", f.raw)
	}
	hubtest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if e.binding(t, alice) != nil {
			return errors.New("the unconsented binding is still stored")
		}
		return nil
	})
}

// TestBindingRevokedLive: the practitioner's revocation reaches the live
// connection at once; a revocation made elsewhere (the CLI, straight in
// the store) within the recheck interval.
func TestBindingRevokedLive(t *testing.T) {
	e := newConsentEnv(t, nil, func(c *gateway.Config) { c.Limits.RecheckInterval = 100 * time.Millisecond })
	c := e.dial(t)
	c.hello(e.token)
	ctx := t.Context()
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")
	aliceID, bobID := id.UserID("@"+alice+":"+server), id.UserID("@"+bob+":"+server)
	c.mustResult(map[string]any{"type": "bind", "id": "a", "idnat": alice, "link_code": e.code(t, alice)}, nil)
	c.mustResult(map[string]any{"type": "bind", "id": "b", "idnat": bob, "link_code": e.code(t, bob)}, nil)

	if ok, err := e.svc.Revoke(ctx, door.Of(door.Bridge, "acme-app"), aliceID, string(aliceID)); err != nil || !ok {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	f := c.mustNext()
	if f.Type != "user_revoked" || f.Code != "EIMIS_BINDING_REVOKED" || !strings.Contains(string(f.raw), string(aliceID)) {
		t.Fatalf("push: %s", f.raw)
	}
	if f, _ := c.request(map[string]any{"type": "create_room", "id": "cr", "user": alice, "name": "x"}); f.Code != "EIMIS_NOT_BOUND" {
		t.Fatalf("acting for a revoked user: %s", f.raw)
	}

	// Removed behind the gateway's back: the recheck notices.
	if _, err := e.st.DeleteBinding(ctx, store.BindingBridge, "acme-app", string(bobID)); err != nil {
		t.Fatal(err)
	}
	f = c.mustNext()
	if f.Type != "user_revoked" || f.Code != "EIMIS_BINDING_REVOKED" || !strings.Contains(string(f.raw), string(bobID)) {
		t.Fatalf("push after a removal elsewhere: %s", f.raw)
	}
	if _, err := e.g.ActingUser(ctx, e.token, string(bobID)); err == nil {
		t.Fatal("the media endpoint still accepts uploads for bob")
	}
	// With a new consent, she is bound again.
	c.mustResult(map[string]any{"type": "bind", "id": "a2", "idnat": alice, "link_code": e.code(t, alice)}, nil)
	c.mustResult(map[string]any{"type": "create_room", "id": "cr2", "user": alice, "name": "x"}, nil)
}
