package consent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
)

// memStore is an in-memory Store; the dialects are held to the same
// behaviour by the store conformance suite.
type memStore struct {
	mu       sync.Mutex
	apps     map[string]bool // "kind/id"
	bindings map[[3]string]store.Binding
	codes    []store.LinkCode
}

func newMemStore(apps ...string) *memStore {
	m := &memStore{apps: map[string]bool{}, bindings: map[[3]string]store.Binding{}}
	for _, a := range apps {
		m.apps[a] = true
	}
	return m
}

func (m *memStore) PutBinding(_ context.Context, b store.Binding) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.apps[b.Kind+"/"+b.AppID] {
		return false, store.ErrNotFound
	}
	k := [3]string{b.Kind, b.AppID, b.UserID}
	_, existed := m.bindings[k]
	m.bindings[k] = b
	return !existed, nil
}

func (m *memStore) GetBinding(_ context.Context, kind, appID, userID string) (*store.Binding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bindings[[3]string{kind, appID, userID}]
	if !ok {
		return nil, store.ErrNotFound
	}
	return &b, nil
}

func (m *memStore) DeleteBinding(_ context.Context, kind, appID, userID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [3]string{kind, appID, userID}
	_, ok := m.bindings[k]
	delete(m.bindings, k)
	return ok, nil
}

func (m *memStore) Bindings(_ context.Context, f store.BindingFilter) ([]store.Binding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Binding
	for _, b := range m.bindings {
		if (f.Kind == "" || f.Kind == b.Kind) && (f.AppID == "" || f.AppID == b.AppID) && (f.UserID == "" || f.UserID == b.UserID) {
			out = append(out, b)
		}
	}
	return out, nil
}

func (m *memStore) PutLinkCode(_ context.Context, c store.LinkCode, _ int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.codes = append(m.codes, c)
	return nil
}

func (m *memStore) TakeLinkCode(_ context.Context, hash []byte, d string, now time.Time) (*store.LinkCode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, c := range m.codes {
		if bytes.Equal(c.Hash, hash) && now.Before(c.ExpiresAt) && (c.Door == "" || c.Door == d) {
			m.codes = append(m.codes[:i], m.codes[i+1:]...)
			return &c, nil
		}
	}
	return nil, store.ErrNotFound
}

func (m *memStore) liveCodes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.codes)
}

// clock is a fake clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// trail keeps what the service audited and announced.
type trail struct {
	mu      sync.Mutex
	entries []audit.Entry
	changes []Change
}

func (t *trail) record(_ context.Context, e audit.Entry) {
	t.mu.Lock()
	t.entries = append(t.entries, e)
	t.mu.Unlock()
}

func (t *trail) changed(_ context.Context, c Change) {
	t.mu.Lock()
	t.changes = append(t.changes, c)
	t.mu.Unlock()
}

func (t *trail) last() audit.Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) == 0 {
		return audit.Entry{}
	}
	return t.entries[len(t.entries)-1]
}

const (
	alice = id.UserID("@810000000017:hub.test")
	bob   = id.UserID("@810000000025:hub.test")
)

var (
	acme  = door.Of(door.Bridge, "acme")
	other = door.Of(door.Bridge, "other")
	wa    = door.Of(door.Appservice, "whatsapp")
)

type fixture struct {
	svc   *Service
	st    *memStore
	clock *clock
	trail *trail
}

func newFixture(t *testing.T, adjust func(*Config)) *fixture {
	t.Helper()
	f := &fixture{st: newMemStore("bridge/acme", "bridge/other", "appservice/whatsapp"),
		clock: &clock{now: time.Date(2030, 1, 2, 8, 0, 0, 0, time.UTC)}, trail: &trail{}}
	cfg := Config{Store: f.st, Now: f.clock.Now, Audit: f.trail.record, OnChange: f.trail.changed,
		MaxWrongCodes: 3, WrongCodeWindow: 10 * time.Minute}
	if adjust != nil {
		adjust(&cfg)
	}
	f.svc = New(cfg)
	return f
}

func (f *fixture) code(t *testing.T, u id.UserID, only door.Door) string {
	t.Helper()
	lc, err := f.svc.IssueLinkCode(t.Context(), u, only)
	if err != nil {
		t.Fatal(err)
	}
	return lc.Code
}

func refusal(err error) policy.Code {
	if r, ok := policy.AsRefusal(err); ok {
		return r.Code
	}
	if err != nil {
		return policy.Code("error: " + err.Error())
	}
	return ""
}

func TestCodes(t *testing.T) {
	shape := regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$`)
	seen := map[string]bool{}
	for range 1000 {
		c := newCode()
		if !shape.MatchString(c) {
			t.Fatalf("code %q is not XXXX-XXXX in Crockford's alphabet", c)
		}
		if seen[c] {
			t.Fatalf("code %q drawn twice in 1000: not 40 random bits", c)
		}
		seen[c] = true
	}
	for _, c := range []struct{ in, want string }{
		{"7K3M-9QXZ", "7K3M9QXZ"},
		{"7k3m9qxz", "7K3M9QXZ"},
		{" 7K3M 9QXZ ", "7K3M9QXZ"},
		{"OIL0-1234", "01101234"}, // O as 0, I and L as 1
		{"7K3M-9QX", ""},          // too short
		{"7K3M-9QXZ0", ""},        // too long
		{"7K3M-9QXU", ""},         // U is not in the alphabet
		{"7K3M_9QXZ", ""},
		{"", ""},
	} {
		got, ok := normalizeCode(c.in)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("normalizeCode(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
}

func TestLinkCodeBind(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	lc, err := f.svc.IssueLinkCode(ctx, alice, door.Door{})
	if err != nil {
		t.Fatal(err)
	}
	if want := f.clock.Now().Add(DefaultLinkCodeTTL); !lc.ExpiresAt.Equal(want) {
		t.Errorf("expires at %v, want %v", lc.ExpiresAt, want)
	}
	if e := f.trail.last(); e.Action != audit.ActionBindingLinkCode || e.Actor != string(alice) || e.Reason != "for=any" {
		t.Errorf("link code audit = %+v", e)
	}
	// Typed in lower case, without the dash: the same code.
	typed := lc.Code[:4] + lc.Code[5:]
	g, err := f.svc.Bind(ctx, acme, alice, Evidence{LinkCode: typed})
	if err != nil {
		t.Fatalf("bind with the code: %v", err)
	}
	want := store.Binding{Kind: store.BindingBridge, AppID: "acme", UserID: string(alice), Proof: store.ProofLinkCode, BoundAt: f.clock.Now()}
	if g.Binding != want || !g.Created || !g.Fresh {
		t.Errorf("grant = %+v, want %+v created and fresh", g, want)
	}
	if e := f.trail.last(); e.Action != audit.ActionBindingBind || e.Actor != "bridge:acme" || e.Target != string(alice) ||
		e.Decision != audit.Allow || e.Reason != "app=bridge:acme proof=link_code" {
		t.Errorf("bind audit = %+v", e)
	}
	if len(f.trail.changes) != 1 || f.trail.changes[0].Action != audit.ActionBindingBind || f.trail.changes[0].Binding != want {
		t.Errorf("changes = %+v", f.trail.changes)
	}
	// Single use: the same code again, even for another app, is refused.
	if _, err := f.svc.Bind(ctx, other, alice, Evidence{LinkCode: lc.Code}); refusal(err) != policy.LinkCodeInvalid {
		t.Errorf("code used twice: %v", err)
	}
	// The binding stands: binding again without evidence (a reconnecting
	// bridge) is the existing consent, not a new one.
	g, err = f.svc.Bind(ctx, acme, alice, Evidence{})
	if err != nil || g.Fresh || g.Created || g.Binding.Proof != store.ProofLinkCode {
		t.Errorf("bind again without evidence = %+v, %v", g, err)
	}
	// Another app has no consent from alice.
	if _, err := f.svc.Bind(ctx, other, alice, Evidence{}); refusal(err) != policy.ConsentRequired {
		t.Errorf("another bridge without proof: %v", err)
	}
}

func TestLinkCodeExpires(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.LinkCodeTTL = 2 * time.Minute })
	code := f.code(t, alice, door.Door{})
	late := f.code(t, alice, door.Door{})
	f.clock.Advance(2*time.Minute - time.Millisecond)
	if _, err := f.svc.Bind(t.Context(), acme, alice, Evidence{LinkCode: code}); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	f.clock.Advance(time.Millisecond)
	if _, err := f.svc.Bind(t.Context(), other, alice, Evidence{LinkCode: late}); refusal(err) != policy.LinkCodeInvalid {
		t.Fatalf("at expiry: %v", err)
	}
}

func TestLinkCodeIsThePractitioners(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	code := f.code(t, alice, door.Door{})
	// Bob's bind with alice's code fails, and does not burn the code.
	if _, err := f.svc.Bind(ctx, acme, bob, Evidence{LinkCode: code}); refusal(err) != policy.LinkCodeInvalid {
		t.Fatalf("bob with alice's code: %v", err)
	}
	if _, err := f.svc.GetBindingForTest(ctx, acme, bob); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob is bound: %v", err)
	}
	if _, err := f.svc.Bind(ctx, acme, alice, Evidence{LinkCode: code}); err != nil {
		t.Fatalf("alice with her code: %v", err)
	}
}

func TestLinkCodeRestrictedToOneApp(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	code := f.code(t, alice, acme)
	if e := f.trail.last(); e.Reason != "for=bridge:acme" {
		t.Errorf("audit of a restricted code = %+v", e)
	}
	for _, d := range []door.Door{other, wa} {
		if _, err := f.svc.Bind(ctx, d, alice, Evidence{LinkCode: code}); refusal(err) != policy.LinkCodeInvalid {
			t.Fatalf("%s with a code for bridge:acme: %v", d, err)
		}
	}
	if _, err := f.svc.Bind(ctx, acme, alice, Evidence{LinkCode: code}); err != nil {
		t.Fatalf("bridge:acme with its code: %v", err)
	}
	if _, err := f.svc.IssueLinkCode(ctx, alice, door.Of(door.Client, "DEVICE")); !errors.Is(err, ErrBadDoor) {
		t.Errorf("code restricted to a client device: %v", err)
	}
	if _, err := f.svc.IssueLinkCode(ctx, alice, door.Of(door.Bridge, "")); !errors.Is(err, ErrBadDoor) {
		t.Errorf("code restricted to a bridge without ID: %v", err)
	}
}

// TestLinkCodeRace: two apps racing with one code: exactly one binds.
func TestLinkCodeRace(t *testing.T) {
	f := newFixture(t, nil)
	code := f.code(t, alice, door.Door{})
	var wg sync.WaitGroup
	results := make([]error, 2)
	for i, d := range []door.Door{acme, other} {
		wg.Go(func() { _, results[i] = f.svc.Bind(context.Background(), d, alice, Evidence{LinkCode: code}) })
	}
	wg.Wait()
	won := 0
	for _, err := range results {
		switch refusal(err) {
		case "":
			won++
		case policy.LinkCodeInvalid:
		default:
			t.Errorf("racer: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d racers bound with one code: %v", won, results)
	}
}

func TestWrongCodesLockTheApp(t *testing.T) {
	// 3 wrong codes per 10 minutes; codes outlive the window.
	f := newFixture(t, func(c *Config) { c.LinkCodeTTL = time.Hour })
	ctx := t.Context()
	code := f.code(t, alice, door.Door{})
	for i, wrong := range []string{"0000-0000", "not a code", "ZZZZ-ZZZZ"} {
		if _, err := f.svc.Bind(ctx, acme, alice, Evidence{LinkCode: wrong}); refusal(err) != policy.LinkCodeInvalid {
			t.Fatalf("wrong code %d: %v", i, err)
		}
	}
	// Locked: even the right code is refused, and not consumed.
	f.clock.Advance(9 * time.Minute)
	if _, err := f.svc.Bind(ctx, acme, alice, Evidence{LinkCode: code}); refusal(err) != policy.LinkCodeAttempts {
		t.Fatalf("right code while locked: %v", err)
	}
	if f.st.liveCodes() != 1 {
		t.Fatalf("the right code was consumed while locked")
	}
	// Other apps are not locked.
	other2 := f.code(t, bob, door.Door{})
	if _, err := f.svc.Bind(ctx, other, bob, Evidence{LinkCode: other2}); err != nil {
		t.Fatalf("another bridge: %v", err)
	}
	// The lock ends with the window.
	f.clock.Advance(time.Minute)
	if _, err := f.svc.Bind(ctx, acme, alice, Evidence{LinkCode: code}); err != nil {
		t.Fatalf("right code after the window: %v", err)
	}
}

func TestWithoutProof(t *testing.T) {
	cases := []struct {
		name   string
		adjust func(*Config)
		d      door.Door
		want   policy.Code
		proof  string
	}{
		{"default: refused", nil, acme, policy.ConsentRequired, ""},
		{"insecure mode: a bridge binds", func(c *Config) { c.BridgeInsecure = true }, acme, "", store.ProofInsecure},
		{"insecure mode is for bridges only", func(c *Config) { c.BridgeInsecure = true }, wa, policy.ConsentRequired, ""},
		{"PSC required", func(c *Config) { c.BridgeRequirePSC = true }, acme, policy.PSCProofRequired, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.adjust)
			g, err := f.svc.Bind(t.Context(), c.d, alice, Evidence{})
			if refusal(err) != c.want {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if c.want == "" && g.Binding.Proof != c.proof {
				t.Fatalf("proof %q, want %q", g.Binding.Proof, c.proof)
			}
			if c.want != "" && len(f.trail.entries) != 0 {
				t.Fatalf("a refusal was audited as allowed: %+v", f.trail.entries)
			}
		})
	}
}

func TestPSCProof(t *testing.T) {
	verify := func(_ context.Context, idNat, proof string) error {
		if proof != "token-of-"+idNat {
			return fmt.Errorf("token of someone else")
		}
		return nil
	}
	ctx := t.Context()
	f := newFixture(t, func(c *Config) { c.VerifyPSC, c.BridgeRequirePSC = verify, true })
	if _, err := f.svc.Bind(ctx, acme, alice, Evidence{PSCProof: "token-of-" + bob.Localpart()}); refusal(err) != policy.PSCProofInvalid {
		t.Fatalf("bob's proof for alice: %v", err)
	}
	// Under bridge_require_psc_proof, link codes and approvals are refused.
	if _, err := f.svc.Bind(ctx, acme, alice, Evidence{LinkCode: f.code(t, alice, door.Door{})}); refusal(err) != policy.PSCProofRequired {
		t.Fatalf("link code under require PSC: %v", err)
	}
	if _, err := f.svc.Approve(ctx, alice, acme); refusal(err) != policy.PSCProofRequired {
		t.Fatalf("approval under require PSC: %v", err)
	}
	g, err := f.svc.Bind(ctx, acme, alice, Evidence{PSCProof: "token-of-" + alice.Localpart()})
	if err != nil || g.Binding.Proof != store.ProofPSC {
		t.Fatalf("alice's proof: %+v, %v", g, err)
	}
	// Without Pro Santé Connect, a proof cannot be checked.
	f = newFixture(t, nil)
	if _, err := f.svc.Bind(ctx, acme, alice, Evidence{PSCProof: "token-of-" + alice.Localpart()}); refusal(err) != policy.PSCProofInvalid {
		t.Fatalf("proof without Pro Santé Connect: %v", err)
	}
}

func TestHonoured(t *testing.T) {
	b := func(kind, proof string) store.Binding {
		return store.Binding{Kind: kind, AppID: "x", UserID: string(alice), Proof: proof}
	}
	br, as := store.BindingBridge, store.BindingAppservice
	cases := []struct {
		name              string
		insecure, require bool
		binding           store.Binding
		want              bool
	}{
		{"link code", false, false, b(br, store.ProofLinkCode), true},
		{"approval", false, false, b(as, store.ProofSession), true},
		{"psc", false, true, b(br, store.ProofPSC), true},
		{"link code under require PSC", false, true, b(br, store.ProofLinkCode), false},
		{"appservice approval under require PSC", false, true, b(as, store.ProofSession), true},
		{"insecure binding in secure mode", false, false, b(br, store.ProofInsecure), false},
		{"legacy binding in secure mode", false, false, b(br, store.ProofLegacy), false},
		{"insecure binding in insecure mode", true, false, b(br, store.ProofInsecure), true},
		{"legacy binding in insecure mode", true, false, b(br, store.ProofLegacy), true},
		{"unknown proof", true, false, b(br, "trust-me"), false},
	}
	for _, c := range cases {
		svc := New(Config{BridgeInsecure: c.insecure, BridgeRequirePSC: c.require})
		if got := svc.Honoured(c.binding); got != c.want {
			t.Errorf("%s: honoured = %v, want %v", c.name, got, c.want)
		}
	}
	// An insecure binding does not survive leaving the insecure mode.
	ctx := t.Context()
	f := newFixture(t, func(c *Config) { c.BridgeInsecure = true })
	if _, err := f.svc.Bind(ctx, acme, alice, Evidence{}); err != nil {
		t.Fatal(err)
	}
	secure := New(Config{Store: f.st, Now: f.clock.Now})
	if _, err := secure.Bind(ctx, acme, alice, Evidence{}); refusal(err) != policy.ConsentRequired {
		t.Fatalf("insecure binding in secure mode: %v", err)
	}
}

func TestApproveRevokeUnbind(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	g, err := f.svc.Approve(ctx, alice, wa)
	if err != nil || g.Binding.Proof != store.ProofSession || g.Binding.Kind != store.BindingAppservice || !g.Created {
		t.Fatalf("approve = %+v, %v", g, err)
	}
	if e := f.trail.last(); e.Actor != string(alice) || e.Action != audit.ActionBindingBind || e.Reason != "app=appservice:whatsapp proof=session" {
		t.Errorf("approval audit = %+v", e)
	}
	if _, err := f.svc.Approve(ctx, alice, door.Of(door.Appservice, "nope")); !errors.Is(err, ErrUnknownApp) {
		t.Errorf("approve an unknown appservice: %v", err)
	}
	if _, err := f.svc.Bind(ctx, door.Of(door.Bridge, "nope"), alice, Evidence{LinkCode: f.code(t, alice, door.Door{})}); !errors.Is(err, ErrUnknownApp) {
		t.Errorf("bind through an unknown bridge: %v", err)
	}

	ok, err := f.svc.Revoke(ctx, wa, alice, "@admin:hub.test")
	if err != nil || !ok {
		t.Fatalf("revoke = %v, %v", ok, err)
	}
	if e := f.trail.last(); e.Actor != "@admin:hub.test" || e.Action != audit.ActionBindingRevoke || e.Target != string(alice) || e.Reason != "app=appservice:whatsapp" {
		t.Errorf("revoke audit = %+v", e)
	}
	if c := f.trail.changes[len(f.trail.changes)-1]; c.Action != audit.ActionBindingRevoke || c.Binding.AppID != "whatsapp" || c.Binding.UserID != string(alice) {
		t.Errorf("revoke change = %+v", c)
	}
	n := len(f.trail.entries)
	if ok, err := f.svc.Revoke(ctx, wa, alice, string(alice)); ok || err != nil {
		t.Errorf("revoke again = %v, %v", ok, err)
	}
	if len(f.trail.entries) != n {
		t.Error("revoking nothing was audited")
	}

	if _, err := f.svc.Bind(ctx, acme, bob, Evidence{LinkCode: f.code(t, bob, door.Door{})}); err != nil {
		t.Fatal(err)
	}
	ok, err = f.svc.Unbind(ctx, acme, bob)
	if err != nil || !ok {
		t.Fatalf("unbind = %v, %v", ok, err)
	}
	if e := f.trail.last(); e.Actor != "bridge:acme" || e.Action != audit.ActionBindingUnbind {
		t.Errorf("unbind audit = %+v", e)
	}
	if _, err := f.svc.Bind(ctx, acme, bob, Evidence{}); refusal(err) != policy.ConsentRequired {
		t.Errorf("bind after unbind without proof: %v", err)
	}
}

// GetBindingForTest reads a binding straight from the store.
func (s *Service) GetBindingForTest(ctx context.Context, d door.Door, u id.UserID) (*store.Binding, error) {
	kind, err := kindOf(d)
	if err != nil {
		return nil, err
	}
	return s.cfg.Store.GetBinding(ctx, kind, d.ID, string(u))
}
