package hub_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/store"
)

// TestAdminAPIOperators: the operator allow-list through the running hub's
// admin API, with an administration account's token; a practitioner's
// token is refused; the registry the bridges will consult sees changes at
// once.
func TestAdminAPIOperators(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	if err := h.Store.CreateServiceAccount(ctx, store.ServiceAccount{Localpart: "ops", Kind: store.KindAdmin, Name: "Exploitation"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.IDs.CreateAccount(ctx, "ops", "pw-ops", true); err != nil {
		t.Fatal(err)
	}
	ops := h.Client(t, "ops", "pw-ops")
	alice := h.NewUser(t, "alice")

	call := func(token, method, path string, body any) (int, map[string]any) {
		t.Helper()
		var rd bytes.Buffer
		if body != nil {
			_ = json.NewEncoder(&rd).Encode(body)
		}
		req, _ := http.NewRequest(method, h.URL+"/_eimis/admin/v1"+path, &rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := call("", "GET", "/operators", nil); code != 401 || out["errcode"] != "M_MISSING_TOKEN" {
		t.Fatalf("no token: %d %v", code, out)
	}
	if code, out := call(alice.AccessToken, "GET", "/operators", nil); code != 403 || out["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("a practitioner is not a server admin: %d %v", code, out)
	}
	acme := map[string]any{"id": "acme", "name": "ACME Messenger", "server_names": []string{"acme.example"}, "contact": "security@acme.example"}
	if code, out := call(ops.AccessToken, "POST", "/operators", acme); code != 201 || out["status"] != "active" {
		t.Fatalf("add: %d %v", code, out)
	}
	if _, err := h.Operators.CheckServer("acme.example"); err != nil {
		t.Fatalf("an added operator's server must be allowed: %v", err)
	}
	if code, out := call(ops.AccessToken, "POST", "/operators/acme/suspend", map[string]string{"reason": "bridge flooding"}); code != 200 || out["status"] != "suspended" {
		t.Fatalf("suspend: %d %v", code, out)
	}
	_, err := h.Operators.Check("acme")
	if r, ok := operators.AsRefusal(err); !ok || r.Code != operators.CodeOperatorSuspended {
		t.Fatalf("check after suspend: %v", err)
	}
	if code, out := call(ops.AccessToken, "POST", "/operators/acme/revoke", map[string]string{"reason": "contract ended"}); code != 200 || out["status"] != "revoked" {
		t.Fatalf("revoke: %d %v", code, out)
	}
	if code, out := call(ops.AccessToken, "POST", "/operators/acme/reactivate", map[string]string{}); code != 409 || out["eimis_code"] != "EIMIS_OPERATOR_REVOKED" {
		t.Fatalf("revoked is final: %d %v", code, out)
	}
	if _, err := h.Operators.CheckServer("unknown.example"); err == nil {
		t.Fatal("a server not on the allow-list must be refused")
	}
}
