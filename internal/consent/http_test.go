package consent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/store"
)

// tokenAuth maps bearer tokens to users, as the Client-Server API does.
type tokenAuth map[string]string

func (a tokenAuth) Authenticate(r *http.Request) (string, door.Door, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", door.Door{}, mautrix.MMissingToken.WithMessage("Missing access token")
	}
	u, ok := a[tok]
	if !ok {
		return "", door.Door{}, mautrix.MUnknownToken.WithMessage("Unknown access token")
	}
	return u, door.Of(door.Client, "DEV-"+tok), nil
}

func TestClientAPI(t *testing.T) {
	f := newFixture(t, nil)
	mux := http.NewServeMux()
	NewAPI(f.svc, tokenAuth{
		"alice": string(alice), "bob": string(bob),
		"ops": "@ops:hub.test", "puppet": "@fake_810000000017:hub.test", "foreign": "@810000000017:elsewhere.example",
	}, "hub.test", nil).Register(mux)
	do := func(method, path, token, body string) (int, map[string]any) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		out := map[string]any{}
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}
	const codePath = ClientPath + "/link_code"

	// Only a practitioner's own session.
	for _, c := range []struct {
		token   string
		status  int
		errcode string
	}{
		{"", 401, "M_MISSING_TOKEN"},
		{"stolen", 401, "M_UNKNOWN_TOKEN"},
		{"ops", 403, "M_FORBIDDEN"},
		{"puppet", 403, "M_FORBIDDEN"},
		{"foreign", 403, "M_FORBIDDEN"},
	} {
		if st, out := do("POST", codePath, c.token, ""); st != c.status || out["errcode"] != c.errcode {
			t.Errorf("link code with token %q: %d %v", c.token, st, out)
		}
	}

	// Codes, any app or one.
	st, out := do("POST", codePath, "alice", "")
	if st != 200 || !strings.Contains(out["link_code"].(string), "-") || out["expires_in_ms"] != float64(DefaultLinkCodeTTL.Milliseconds()) {
		t.Fatalf("link code: %d %v", st, out)
	}
	if st, out := do("POST", codePath, "alice", `{"door":"bridge","id":"acme"}`); st != 200 || out["door"] != "bridge" || out["id"] != "acme" {
		t.Fatalf("restricted link code: %d %v", st, out)
	}
	for _, c := range []struct{ body, errcode string }{
		{`{"door":"client","id":"DEV"}`, "M_INVALID_PARAM"},
		{`{"id":"acme"}`, "M_INVALID_PARAM"},
		{`{"door":"bridge","id":"acme","extra":1}`, "M_BAD_JSON"},
		{`["bridge"]`, "M_BAD_JSON"},
		{`{"door":`, "M_NOT_JSON"},
	} {
		if st, out := do("POST", codePath, "alice", c.body); st != 400 || out["errcode"] != c.errcode {
			t.Errorf("link code with %s: %d %v", c.body, st, out)
		}
	}
	if f.st.liveCodes() != 2 {
		t.Fatalf("%d codes stored, want 2: refused requests stored nothing", f.st.liveCodes())
	}

	// Approvals and listing: one's own bindings only.
	if st, out := do("POST", ClientPath, "alice", `{"door":"appservice","id":"whatsapp"}`); st != 200 || out["proof"] != "session" || out["active"] != true {
		t.Fatalf("approve: %d %v", st, out)
	}
	if st, out := do("POST", ClientPath, "alice", `{"door":"appservice","id":"nope"}`); st != 404 || out["errcode"] != "M_NOT_FOUND" {
		t.Fatalf("approve an unknown app: %d %v", st, out)
	}
	if st, out := do("POST", ClientPath, "alice", ``); st != 400 {
		t.Fatalf("approve without a body: %d %v", st, out)
	}
	if _, err := f.svc.Approve(t.Context(), bob, door.Of(door.Bridge, "acme")); err != nil {
		t.Fatal(err)
	}
	st, out = do("GET", ClientPath, "alice", "")
	list, _ := out["bindings"].([]any)
	if st != 200 || len(list) != 1 || list[0].(map[string]any)["id"] != "whatsapp" || list[0].(map[string]any)["user_id"] != string(alice) {
		t.Fatalf("alice's bindings: %d %v", st, out)
	}

	// Revocation of one's own binding only.
	if st, _ := do("DELETE", ClientPath+"/bridge/acme", "alice", ""); st != 404 {
		t.Fatalf("alice revokes bob's binding: %d", st)
	}
	if b, _ := f.st.GetBinding(t.Context(), store.BindingBridge, "acme", string(bob)); b == nil {
		t.Fatal("alice's request removed bob's binding")
	}
	if st, _ := do("DELETE", ClientPath+"/telepathy/acme", "alice", ""); st != 404 {
		t.Fatalf("revoke through an unknown door: %d", st)
	}
	if st, out := do("DELETE", ClientPath+"/appservice/whatsapp", "alice", ""); st != 200 {
		t.Fatalf("revoke: %d %v", st, out)
	}
	if st, out := do("GET", ClientPath, "alice", ""); st != 200 || len(out["bindings"].([]any)) != 0 {
		t.Fatalf("after revoke: %d %v", st, out)
	}
}
