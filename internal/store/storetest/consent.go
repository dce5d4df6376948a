package storetest

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

var consentTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ConsentBindings", testConsentBindings},
	{"ConsentLegacyBridgeBindings", testConsentLegacyBridgeBindings},
	{"ConsentLinkCodes", testConsentLinkCodes},
	{"ConsentLinkCodeRace", testConsentLinkCodeRace},
	{"ConsentLinkCodesPerUser", testConsentLinkCodesPerUser},
}

func testConsentBindings(t *testing.T, s store.Store) {
	ctx := t.Context()
	addOperator(t, s, operator("acme", "acme.example"))
	addBridge(t, s, "b1", "acme", 1)
	must(t, "appservice", s.CreateAppservice(ctx, appservice("wa")))
	const u1, u2 = "@810000000017:hub", "@810000000025:hub"
	t0 := time.UnixMilli(1_700_000_000_000).UTC()

	put := func(b store.Binding) bool {
		t.Helper()
		created, err := s.PutBinding(ctx, b)
		must(t, "put binding", err)
		return created
	}
	if !put(store.Binding{Kind: store.BindingBridge, AppID: "b1", UserID: u1, Proof: store.ProofLinkCode, BoundAt: t0}) {
		t.Error("first bridge binding reported as existing")
	}
	if !put(store.Binding{Kind: store.BindingAppservice, AppID: "wa", UserID: u1, Proof: store.ProofSession, BoundAt: t0}) {
		t.Error("first appservice binding reported as existing")
	}
	put(store.Binding{Kind: store.BindingAppservice, AppID: "wa", UserID: u2, Proof: store.ProofPSC, BoundAt: t0})
	// Binding again records the new proof and time.
	t1 := t0.Add(time.Minute)
	if put(store.Binding{Kind: store.BindingBridge, AppID: "b1", UserID: u1, Proof: store.ProofPSC, BoundAt: t1}) {
		t.Error("second binding reported as new")
	}
	b, err := s.GetBinding(ctx, store.BindingBridge, "b1", u1)
	must(t, "get", err)
	if want := (store.Binding{Kind: store.BindingBridge, AppID: "b1", UserID: u1, Proof: store.ProofPSC, BoundAt: t1}); *b != want {
		t.Errorf("binding = %+v, want %+v", *b, want)
	}
	// The bridge's own view of its users is the same table.
	if users, _ := s.BridgeUsers(ctx, "b1"); !slices.Equal(users, []string{u1}) {
		t.Errorf("bridge users = %v", users)
	}

	_, err = s.PutBinding(ctx, store.Binding{Kind: store.BindingBridge, AppID: "nobody", UserID: u1, Proof: store.ProofPSC})
	wantErr(t, "unknown bridge", err, store.ErrNotFound)
	_, err = s.PutBinding(ctx, store.Binding{Kind: store.BindingAppservice, AppID: "nobody", UserID: u1, Proof: store.ProofPSC})
	wantErr(t, "unknown appservice", err, store.ErrNotFound)
	if _, err := s.PutBinding(ctx, store.Binding{Kind: "smoke-signals", AppID: "b1", UserID: u1}); err == nil {
		t.Error("unknown kind accepted")
	}
	_, err = s.GetBinding(ctx, store.BindingAppservice, "wa", "@nobody:hub")
	wantErr(t, "get unknown", err, store.ErrNotFound)

	list := func(f store.BindingFilter) []string {
		t.Helper()
		bs, err := s.Bindings(ctx, f)
		must(t, "list", err)
		var out []string
		for _, b := range bs {
			out = append(out, b.Kind+"/"+b.AppID+"/"+b.UserID+"/"+b.Proof)
		}
		return out
	}
	all := []string{
		"appservice/wa/" + u1 + "/session", "appservice/wa/" + u2 + "/psc", "bridge/b1/" + u1 + "/psc",
	}
	if got := list(store.BindingFilter{}); !slices.Equal(got, all) {
		t.Errorf("all bindings = %v, want %v", got, all)
	}
	if got, want := list(store.BindingFilter{UserID: u1}), []string{all[0], all[2]}; !slices.Equal(got, want) {
		t.Errorf("bindings of u1 = %v, want %v", got, want)
	}
	if got, want := list(store.BindingFilter{Kind: store.BindingAppservice, AppID: "wa"}), all[:2]; !slices.Equal(got, want) {
		t.Errorf("bindings of wa = %v, want %v", got, want)
	}
	if got := list(store.BindingFilter{Kind: store.BindingBridge, UserID: u2}); len(got) != 0 {
		t.Errorf("bridge bindings of u2 = %v", got)
	}

	existed, err := s.DeleteBinding(ctx, store.BindingAppservice, "wa", u1)
	must(t, "delete", err)
	if !existed {
		t.Error("delete reported no binding")
	}
	if existed, _ := s.DeleteBinding(ctx, store.BindingAppservice, "wa", u1); existed {
		t.Error("second delete reported a binding")
	}
	if got, want := list(store.BindingFilter{UserID: u1}), []string{all[2]}; !slices.Equal(got, want) {
		t.Errorf("bindings of u1 after delete = %v, want %v", got, want)
	}
	// Removing an appservice removes its bindings.
	must(t, "delete appservice", s.DeleteAppservice(ctx, "wa"))
	if got := list(store.BindingFilter{Kind: store.BindingAppservice}); len(got) != 0 {
		t.Errorf("bindings of a removed appservice = %v", got)
	}
}

// testConsentLegacyBridgeBindings: a bridge binding removed through the
// bridge API is gone from the consent view too, and the other way round.
func testConsentLegacyBridgeBindings(t *testing.T, s store.Store) {
	ctx := t.Context()
	addOperator(t, s, operator("acme", "acme.example"))
	addBridge(t, s, "b1", "acme", 1)
	const u = "@810000000017:hub"
	if _, err := s.PutBinding(ctx, store.Binding{Kind: store.BindingBridge, AppID: "b1", UserID: u, Proof: store.ProofInsecure}); err != nil {
		t.Fatal(err)
	}
	if brs, _ := s.UserBridges(ctx, u); !slices.Equal(brs, []string{"b1"}) {
		t.Errorf("bridges of u = %v", brs)
	}
	if existed, err := s.UnbindBridgeUser(ctx, "b1", u); err != nil || !existed {
		t.Fatalf("unbind: %v, %v", existed, err)
	}
	_, err := s.GetBinding(ctx, store.BindingBridge, "b1", u)
	wantErr(t, "binding after unbind", err, store.ErrNotFound)
}

func linkCode(user, door string, hash byte, created time.Time, ttl time.Duration) store.LinkCode {
	return store.LinkCode{Hash: bytes.Repeat([]byte{hash}, 32), UserID: user, Door: door, CreatedAt: created, ExpiresAt: created.Add(ttl)}
}

func testConsentLinkCodes(t *testing.T, s store.Store) {
	ctx := t.Context()
	const u = "@810000000017:hub"
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	must(t, "put any", s.PutLinkCode(ctx, linkCode(u, "", 1, t0, 10*time.Minute), 5))
	must(t, "put restricted", s.PutLinkCode(ctx, linkCode(u, "bridge:b1", 2, t0, 10*time.Minute), 5))
	must(t, "put short", s.PutLinkCode(ctx, linkCode(u, "", 3, t0, time.Minute), 5))
	wantErr(t, "same hash", s.PutLinkCode(ctx, linkCode(u, "", 1, t0, time.Minute), 5), store.ErrExists)

	take := func(hash byte, door string, at time.Time) (*store.LinkCode, error) {
		return s.TakeLinkCode(ctx, bytes.Repeat([]byte{hash}, 32), door, at)
	}
	now := t0.Add(5 * time.Minute)
	// Expired: not found.
	_, err := take(3, "bridge:b1", now)
	wantErr(t, "expired", err, store.ErrNotFound)
	// Restricted to another door: not found, and not consumed.
	_, err = take(2, "bridge:b2", now)
	wantErr(t, "other door", err, store.ErrNotFound)
	_, err = take(2, "appservice:b1", now)
	wantErr(t, "other kind of door", err, store.ErrNotFound)
	c, err := take(2, "bridge:b1", now)
	must(t, "take restricted", err)
	if want := linkCode(u, "bridge:b1", 2, t0, 10*time.Minute); !bytes.Equal(c.Hash, want.Hash) || c.UserID != u || c.Door != want.Door ||
		!c.CreatedAt.Equal(t0) || !c.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("taken code = %+v", c)
	}
	// Single use.
	_, err = take(2, "bridge:b1", now)
	wantErr(t, "taken twice", err, store.ErrNotFound)
	// A code for any door works at any door, once.
	if _, err := take(1, "appservice:wa", now); err != nil {
		t.Fatalf("take unrestricted: %v", err)
	}
	_, err = take(1, "appservice:wa", now)
	wantErr(t, "unrestricted taken twice", err, store.ErrNotFound)
	_, err = take(9, "", now)
	wantErr(t, "unknown", err, store.ErrNotFound)
	// At its expiry instant a code is dead.
	must(t, "put", s.PutLinkCode(ctx, linkCode(u, "", 4, t0, 10*time.Minute), 5))
	_, err = take(4, "", t0.Add(10*time.Minute))
	wantErr(t, "at expiry", err, store.ErrNotFound)
}

// testConsentLinkCodeRace: of many binds racing with one code, exactly
// one gets it.
func testConsentLinkCodeRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.Now()
	must(t, "put", s.PutLinkCode(ctx, linkCode("@810000000017:hub", "", 7, t0, time.Hour), 5))
	const racers = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for range racers {
		wg.Go(func() {
			_, err := s.TakeLinkCode(ctx, bytes.Repeat([]byte{7}, 32), "bridge:b1", t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case isNotFound(err):
				lost++
			default:
				t.Errorf("take: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 || lost != racers-1 {
		t.Errorf("%d takes won and %d lost, want 1 and %d", won, lost, racers-1)
	}
}

func testConsentLinkCodesPerUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	const u, other = "@810000000017:hub", "@810000000025:hub"
	t0 := time.Now().Add(-time.Minute)
	must(t, "other's", s.PutLinkCode(ctx, linkCode(other, "", 100, t0, time.Hour), 2))
	for i := range 4 {
		must(t, "put", s.PutLinkCode(ctx, linkCode(u, "", byte(i+1), t0.Add(time.Duration(i)*time.Second), time.Hour), 2))
	}
	// The user keeps the two newest; another user's code is untouched.
	for _, c := range []struct {
		hash byte
		ok   bool
	}{{1, false}, {2, false}, {3, true}, {4, true}, {100, true}} {
		_, err := s.TakeLinkCode(ctx, bytes.Repeat([]byte{c.hash}, 32), "", t0)
		if (err == nil) != c.ok {
			t.Errorf("code %d: take = %v, want found %v", c.hash, err, c.ok)
		}
	}
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
