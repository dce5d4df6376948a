package storetest

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

var bridgeTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"BridgesAddGetList", testBridgesAddGetList},
	{"BridgesRevoke", testBridgesRevoke},
	{"BridgesBindings", testBridgesBindings},
	{"BridgesMembershipAt", testBridgesMembershipAt},
}

func addBridge(t *testing.T, s store.Store, id, operator string, hash byte) *store.Bridge {
	t.Helper()
	b, err := s.AddBridge(t.Context(), store.Bridge{ID: id, OperatorID: operator, TokenHash: bytes.Repeat([]byte{hash}, 32)})
	must(t, "add bridge "+id, err)
	return b
}

func testBridgesAddGetList(t *testing.T, s store.Store) {
	ctx := t.Context()
	addOperator(t, s, operator("acme", "acme.example"))
	if bs, err := s.ListBridges(ctx); err != nil || len(bs) != 0 {
		t.Fatalf("empty store: bridges %v, %v", bs, err)
	}
	before := time.Now().Add(-time.Second)
	got := addBridge(t, s, "acme-prod", "acme", 1)
	if got.ID != "acme-prod" || got.OperatorID != "acme" || !bytes.Equal(got.TokenHash, bytes.Repeat([]byte{1}, 32)) ||
		got.CreatedAt.Before(before) || got.Revoked() {
		t.Fatalf("added bridge = %+v", got)
	}
	addBridge(t, s, "acme-demo", "acme", 2)

	_, err := s.AddBridge(ctx, store.Bridge{ID: "acme-prod", OperatorID: "acme", TokenHash: []byte("other")})
	wantErr(t, "duplicate ID", err, store.ErrExists)
	_, err = s.AddBridge(ctx, store.Bridge{ID: "other", OperatorID: "acme", TokenHash: bytes.Repeat([]byte{1}, 32)})
	wantErr(t, "duplicate token hash", err, store.ErrExists)
	_, err = s.AddBridge(ctx, store.Bridge{ID: "ghost", OperatorID: "nobody", TokenHash: []byte("x")})
	wantErr(t, "unknown operator", err, store.ErrNotFound)

	g, err := s.GetBridge(ctx, "acme-prod")
	must(t, "get", err)
	if g.ID != got.ID || !g.CreatedAt.Equal(got.CreatedAt) || !bytes.Equal(g.TokenHash, got.TokenHash) {
		t.Errorf("get = %+v, want %+v", g, got)
	}
	_, err = s.GetBridge(ctx, "nobody")
	wantErr(t, "get unknown", err, store.ErrNotFound)

	byTok, err := s.BridgeByTokenHash(ctx, bytes.Repeat([]byte{2}, 32))
	must(t, "by token", err)
	if byTok.ID != "acme-demo" {
		t.Errorf("by token = %s, want acme-demo", byTok.ID)
	}
	_, err = s.BridgeByTokenHash(ctx, []byte("unknown"))
	wantErr(t, "unknown token", err, store.ErrNotFound)

	bs, err := s.ListBridges(ctx)
	must(t, "list", err)
	var ids []string
	for _, b := range bs {
		ids = append(ids, b.ID)
	}
	if want := []string{"acme-demo", "acme-prod"}; !slices.Equal(ids, want) {
		t.Errorf("list = %v, want %v", ids, want)
	}
}

func testBridgesRevoke(t *testing.T, s store.Store) {
	ctx := t.Context()
	addOperator(t, s, operator("acme", "acme.example"))
	addBridge(t, s, "b1", "acme", 1)
	r1, err := s.RevokeBridge(ctx, "b1")
	must(t, "revoke", err)
	if !r1.Revoked() {
		t.Fatalf("revoked bridge = %+v", r1)
	}
	time.Sleep(5 * time.Millisecond)
	r2, err := s.RevokeBridge(ctx, "b1")
	must(t, "revoke again", err)
	if !r2.RevokedAt.Equal(r1.RevokedAt) {
		t.Errorf("revoking twice moved the time: %v then %v", r1.RevokedAt, r2.RevokedAt)
	}
	// A revoked bridge is still found by its token: the gateway refuses it
	// with its own reason rather than "unknown token".
	b, err := s.BridgeByTokenHash(ctx, bytes.Repeat([]byte{1}, 32))
	must(t, "by token", err)
	if !b.Revoked() {
		t.Errorf("by token after revoke = %+v", b)
	}
	_, err = s.RevokeBridge(ctx, "nobody")
	wantErr(t, "revoke unknown", err, store.ErrNotFound)
}

func bindBridge(ctx context.Context, s store.Store, bridge, user string) (bool, error) {
	return s.PutBinding(ctx, store.Binding{Kind: store.BindingBridge, AppID: bridge, UserID: user, Proof: store.ProofLinkCode})
}

func testBridgesBindings(t *testing.T, s store.Store) {
	ctx := t.Context()
	addOperator(t, s, operator("acme", "acme.example"))
	addBridge(t, s, "a", "acme", 1)
	addBridge(t, s, "b", "acme", 2)
	const u1, u2 = "@810000000017:hub", "@810000000025:hub"

	created, err := bindBridge(ctx, s, "a", u2)
	must(t, "bind", err)
	if !created {
		t.Error("first bind reported as existing")
	}
	created, err = bindBridge(ctx, s, "a", u2)
	must(t, "bind again", err)
	if created {
		t.Error("second bind reported as new")
	}
	for _, c := range []struct{ bridge, user string }{{"a", u1}, {"b", u1}} {
		_, err := bindBridge(ctx, s, c.bridge, c.user)
		must(t, "bind", err)
	}
	_, err = bindBridge(ctx, s, "nobody", u1)
	wantErr(t, "bind to unknown bridge", err, store.ErrNotFound)

	users, err := s.BridgeUsers(ctx, "a")
	must(t, "users", err)
	if want := []string{u1, u2}; !slices.Equal(users, want) {
		t.Errorf("users of a = %v, want %v", users, want)
	}
	brs, err := s.UserBridges(ctx, u1)
	must(t, "bridges", err)
	if want := []string{"a", "b"}; !slices.Equal(brs, want) {
		t.Errorf("bridges of u1 = %v, want %v", brs, want)
	}

	existed, err := s.UnbindBridgeUser(ctx, "a", u1)
	must(t, "unbind", err)
	if !existed {
		t.Error("unbind reported no binding")
	}
	existed, err = s.UnbindBridgeUser(ctx, "a", u1)
	must(t, "unbind again", err)
	if existed {
		t.Error("second unbind reported a binding")
	}
	if users, _ := s.BridgeUsers(ctx, "a"); !slices.Equal(users, []string{u2}) {
		t.Errorf("users of a after unbind = %v", users)
	}
	if brs, _ := s.UserBridges(ctx, u1); !slices.Equal(brs, []string{"b"}) {
		t.Errorf("bridges of u1 after unbind = %v", brs)
	}
	if users, err := s.BridgeUsers(ctx, "nobody"); err != nil || len(users) != 0 {
		t.Errorf("users of an unknown bridge = %v, %v", users, err)
	}
}

func testBridgesMembershipAt(t *testing.T, s store.Store) {
	ctx := t.Context()
	const room, other = "!r:hub", "!o:hub"
	const u = "@810000000017:hub"
	createRoom(t, s, room)
	createRoom(t, s, other)
	p := insert(t, s,
		ev(room, "$create", "m.room.create", ptr(""), 1),
		ev(room, "$msg0", "m.room.message", nil, 2),
		member(room, "$inv", u, "invite", 3),
		ev(room, "$msg1", "m.room.message", nil, 4),
		member(room, "$join", u, "join", 5),
		member(other, "$other", u, "join", 1),
		ev(room, "$msg2", "m.room.message", nil, 6),
		member(room, "$leave", u, "leave", 7),
		ev(room, "$msg3", "m.room.message", nil, 8),
	)
	for _, c := range []struct {
		room string
		pos  int64
		want string
	}{
		{room, p[1], ""},
		{room, p[2], "invite"}, // the membership event itself counts
		{room, p[3], "invite"},
		{room, p[4], "join"},
		{room, p[6], "join"}, // another room's event in between changes nothing
		{room, p[7], "leave"},
		{room, p[8], "leave"},
		{other, p[4], ""},
		{other, p[8], "join"},
	} {
		got, err := s.MembershipAt(ctx, c.room, u, c.pos)
		must(t, "MembershipAt", err)
		if got != c.want {
			t.Errorf("MembershipAt(%s, %d) = %q, want %q", c.room, c.pos, got, c.want)
		}
	}
	if got, err := s.MembershipAt(ctx, room, "@someone:hub", p[8]); err != nil || got != "" {
		t.Errorf("MembershipAt of a stranger = %q, %v", got, err)
	}
}
