package adminapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

// TestBindings: operators list every binding and revoke any, with the
// admin as the revocation's actor; only server admins may.
func TestBindings(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := operators.New(st, nil)
	if err := reg.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Add(ctx, operators.Operator{ID: "acme", Name: "ACME", ServerNames: []string{"acme.example"}, Contact: "security@acme.example"}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddBridge(ctx, store.Bridge{ID: "acme-prod", OperatorID: "acme", TokenHash: []byte("h")}); err != nil {
		t.Fatal(err)
	}
	const alice, bob = "@810000000017:hub.test", "@810000000025:hub.test"
	for u, proof := range map[string]string{alice: store.ProofLinkCode, bob: store.ProofLegacy} {
		if _, err := st.PutBinding(ctx, store.Binding{Kind: store.BindingBridge, AppID: "acme-prod", UserID: u, Proof: proof}); err != nil {
			t.Fatal(err)
		}
	}
	var entries []audit.Entry
	svc := consent.New(consent.Config{Store: st, Audit: func(_ context.Context, e audit.Entry) { entries = append(entries, e) }})
	api := New(reg, fakeAuth{}, nil)
	api.SetBindings(svc)
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &env{srv: srv, reg: reg}

	if r := e.do(t, "user-token", "GET", "/_eimis/admin/v1/bindings", ""); r.status != 403 {
		t.Fatalf("a non-admin lists bindings: %d %s", r.status, r.raw)
	}
	r := e.do(t, "admin-token", "GET", "/_eimis/admin/v1/bindings?door=bridge&id=acme-prod", "")
	list, _ := r.body["bindings"].([]any)
	if r.status != 200 || len(list) != 2 {
		t.Fatalf("list: %d %s", r.status, r.raw)
	}
	if b := list[1].(map[string]any); b["user_id"] != bob || b["proof"] != "legacy" || b["active"] != false {
		t.Errorf("a binding without consent is listed as %v", b)
	}
	if r := e.do(t, "admin-token", "GET", "/_eimis/admin/v1/bindings?user_id="+alice, ""); len(r.body["bindings"].([]any)) != 1 {
		t.Errorf("list of alice: %s", r.raw)
	}
	if r := e.do(t, "admin-token", "GET", "/_eimis/admin/v1/bindings?door=pigeon", ""); r.status != 400 || r.body["errcode"] != "M_INVALID_PARAM" {
		t.Errorf("list of an unknown door: %d %s", r.status, r.raw)
	}
	if r := e.do(t, "admin-token", "DELETE", "/_eimis/admin/v1/bindings/bridge/acme-prod/"+alice, ""); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if len(entries) != 1 || entries[0].Action != audit.ActionBindingRevoke || entries[0].Actor != "@admin:hub.test" || entries[0].Target != alice {
		t.Errorf("audit of the revocation: %+v", entries)
	}
	for _, path := range []string{"/bindings/bridge/acme-prod/" + alice, "/bindings/pigeon/acme-prod/" + alice} {
		if r := e.do(t, "admin-token", "DELETE", "/_eimis/admin/v1"+path, ""); r.status != 404 || r.body["errcode"] != "M_NOT_FOUND" {
			t.Errorf("DELETE %s: %d %s", path, r.status, r.raw)
		}
	}
	if r := e.do(t, "admin-token", "POST", "/_eimis/admin/v1/bindings", ""); r.status != 405 || r.header.Get("Allow") != "GET" {
		t.Errorf("POST /bindings: %d %v %s", r.status, r.header, r.raw)
	}
}
