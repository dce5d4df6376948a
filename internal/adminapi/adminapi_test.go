package adminapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

// fakeAuth knows three tokens: an admin's, a plain user's, and one whose
// check breaks (the token store is down).
type fakeAuth struct{}

func (fakeAuth) AdminUser(r *http.Request) (string, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok || tok == "":
		return "", mautrix.MMissingToken.WithMessage("Missing access token")
	case tok == "admin-token":
		return "@admin:hub.test", nil
	case tok == "user-token":
		return "", mautrix.MForbidden.WithMessage("not a server admin")
	case tok == "broken-token":
		return "", errors.New("token store unreachable")
	case tok == "bare-token":
		// A RespError without a status: the API must still answer 401.
		return "", mautrix.RespError{ErrCode: "M_UNKNOWN_TOKEN", Err: "Unknown access token"}
	}
	return "", mautrix.MUnknownToken.WithMessage("Unknown access token")
}

type env struct {
	srv     *httptest.Server
	reg     *operators.Registry
	mu      sync.Mutex
	changes []operators.Change
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := operators.New(st, nil)
	if err := reg.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := &env{reg: reg}
	reg.OnChange(func(c operators.Change) {
		e.mu.Lock()
		e.changes = append(e.changes, c)
		e.mu.Unlock()
	})
	mux := http.NewServeMux()
	New(reg, fakeAuth{}, nil).Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) do(t *testing.T, token, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %q", method, path, raw)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return r
}

func (r response) wantErr(t *testing.T, what string, status int, errcode string) {
	t.Helper()
	if r.status != status || r.body["errcode"] != errcode {
		t.Fatalf("%s: %d %s, want %d %s", what, r.status, r.raw, status, errcode)
	}
	if msg, _ := r.body["error"].(string); msg == "" {
		t.Fatalf("%s: error without a message: %s", what, r.raw)
	}
}

const base = "/_eimis/admin/v1"

const acmeBody = `{"id":"acme","name":"ACME Messenger","server_names":["matrix.acme.example:8448","acme.example"],"contact":"security@acme.example"}`

func TestAuthRefused(t *testing.T) {
	e := newEnv(t)
	routes := []struct{ method, path, body string }{
		{"GET", base + "/operators", ""},
		{"POST", base + "/operators", acmeBody},
		{"GET", base + "/operators/acme", ""},
		{"POST", base + "/operators/acme/suspend", `{"reason":"x"}`},
		{"POST", base + "/operators/acme/reactivate", ""},
		{"POST", base + "/operators/acme/revoke", `{"reason":"x"}`},
		{"GET", base + "/nothing-here", ""},
		{"DELETE", base + "/operators/acme", ""},
	}
	for _, tok := range []struct {
		token   string
		status  int
		errcode string
	}{
		{"", http.StatusUnauthorized, "M_MISSING_TOKEN"},
		{"stolen-token", http.StatusUnauthorized, "M_UNKNOWN_TOKEN"},
		{"bare-token", http.StatusUnauthorized, "M_UNKNOWN_TOKEN"},
		{"user-token", http.StatusForbidden, "M_FORBIDDEN"},
		{"broken-token", http.StatusInternalServerError, "M_UNKNOWN"},
	} {
		for _, rt := range routes {
			what := rt.method + " " + rt.path + " with " + tok.token
			e.do(t, tok.token, rt.method, rt.path, rt.body).wantErr(t, what, tok.status, tok.errcode)
		}
	}
	// Nothing was written by the refused requests.
	if ops, err := e.reg.List(t.Context()); err != nil || len(ops) != 0 {
		t.Fatalf("refused requests stored %+v (%v)", ops, err)
	}
}

func TestOperatorLifecycle(t *testing.T) {
	e := newEnv(t)
	const admin = "admin-token"

	r := e.do(t, admin, "GET", base+"/operators", "")
	if r.status != 200 || r.raw != "{\"operators\":[]}\n" {
		t.Fatalf("empty list: %d %s", r.status, r.raw)
	}

	r = e.do(t, admin, "POST", base+"/operators", acmeBody)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	if loc := r.header.Get("Location"); loc != base+"/operators/acme" {
		t.Errorf("Location = %q", loc)
	}
	if r.body["id"] != "acme" || r.body["name"] != "ACME Messenger" || r.body["contact"] != "security@acme.example" ||
		r.body["status"] != "active" || r.body["status_reason"] != "" {
		t.Errorf("created: %s", r.raw)
	}
	if servers, _ := r.body["server_names"].([]any); len(servers) != 2 || servers[0] != "acme.example" || servers[1] != "matrix.acme.example:8448" {
		t.Errorf("server_names = %v, want both, sorted", r.body["server_names"])
	}
	for _, f := range []string{"created_at", "updated_at"} {
		s, _ := r.body[f].(string)
		if ts, err := time.Parse(time.RFC3339Nano, s); err != nil || time.Since(ts) > time.Hour || time.Since(ts) < -time.Hour {
			t.Errorf("%s = %q, want a recent RFC 3339 time", f, s)
		}
	}
	if op, err := e.reg.CheckServer("acme.example"); err != nil || op.ID != "acme" {
		t.Fatalf("created operator not enforced: %v, %v", op, err)
	}

	r = e.do(t, admin, "POST", base+"/operators", `{"id":"globex","name":"Globex","server_names":["globex.example"],"contact":"https://globex.example/contact"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create globex: %d %s", r.status, r.raw)
	}

	r = e.do(t, admin, "GET", base+"/operators", "")
	ops, _ := r.body["operators"].([]any)
	if r.status != 200 || len(ops) != 2 || ops[0].(map[string]any)["id"] != "acme" || ops[1].(map[string]any)["id"] != "globex" {
		t.Fatalf("list: %d %s", r.status, r.raw)
	}

	r = e.do(t, admin, "GET", base+"/operators/globex", "")
	if r.status != 200 || r.body["id"] != "globex" || r.body["contact"] != "https://globex.example/contact" {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}
	e.do(t, admin, "GET", base+"/operators/nobody", "").wantErr(t, "get unknown", 404, "M_NOT_FOUND")

	r = e.do(t, admin, "POST", base+"/operators/acme/suspend", `{"reason":"incident 42"}`)
	if r.status != 200 || r.body["status"] != "suspended" || r.body["status_reason"] != "incident 42" {
		t.Fatalf("suspend: %d %s", r.status, r.raw)
	}
	if _, err := e.reg.CheckServer("acme.example"); err == nil {
		t.Fatal("suspended operator's server still accepted")
	}

	// Reactivate with no body at all.
	r = e.do(t, admin, "POST", base+"/operators/acme/reactivate", "")
	if r.status != 200 || r.body["status"] != "active" {
		t.Fatalf("reactivate: %d %s", r.status, r.raw)
	}

	r = e.do(t, admin, "POST", base+"/operators/acme/revoke", `{"reason":"contract ended"}`)
	if r.status != 200 || r.body["status"] != "revoked" || r.body["status_reason"] != "contract ended" {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	r = e.do(t, admin, "POST", base+"/operators/acme/reactivate", `{}`)
	r.wantErr(t, "reactivate revoked", http.StatusConflict, "M_BAD_STATE")
	if r.body["eimis_code"] != "EIMIS_OPERATOR_REVOKED" {
		t.Errorf("revoked: eimis_code = %v", r.body["eimis_code"])
	}
	e.do(t, admin, "POST", base+"/operators/nobody/suspend", `{"reason":"x"}`).wantErr(t, "suspend unknown", 404, "M_NOT_FOUND")

	// Changes carry the admin who made them.
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.changes) != 5 {
		t.Fatalf("changes: %+v, want 2 adds, suspend, reactivate, revoke", e.changes)
	}
	for _, c := range e.changes {
		if c.Actor != "@admin:hub.test" {
			t.Errorf("change %+v: actor %q, want the admin", c, c.Actor)
		}
	}
	if c := e.changes[4]; c.Operator.ID != "acme" || c.Old != operators.Active || c.New != operators.Revoked || c.Reason != "contract ended" {
		t.Errorf("last change = %+v", c)
	}
}

func TestValidationErrors(t *testing.T) {
	e := newEnv(t)
	const admin = "admin-token"
	if r := e.do(t, admin, "POST", base+"/operators", acmeBody); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	for _, c := range []struct {
		name    string
		path    string
		body    string
		status  int
		errcode string
		field   string // "" when the error names no field
		mention string // text the message must contain
	}{
		{"missing id", "/operators", `{"name":"X","server_names":["x.example"],"contact":"a@x.example"}`, 400, "M_INVALID_PARAM", "id", "id"},
		{"bad id", "/operators", `{"id":"X Corp","name":"X","server_names":["x.example"],"contact":"a@x.example"}`, 400, "M_INVALID_PARAM", "id", "slug"},
		{"missing name", "/operators", `{"id":"x","server_names":["x.example"],"contact":"a@x.example"}`, 400, "M_INVALID_PARAM", "name", "name"},
		{"no servers", "/operators", `{"id":"x","name":"X","server_names":[],"contact":"a@x.example"}`, 400, "M_INVALID_PARAM", "server_names", "server_names"},
		{"bad server", "/operators", `{"id":"x","name":"X","server_names":["X.example"],"contact":"a@x.example"}`, 400, "M_INVALID_PARAM", "server_names", "X.example"},
		{"bad contact", "/operators", `{"id":"x","name":"X","server_names":["x.example"],"contact":"someone"}`, 400, "M_INVALID_PARAM", "contact", "contact"},
		{"duplicate id", "/operators", `{"id":"acme","name":"X","server_names":["x.example"],"contact":"a@x.example"}`, 409, "M_INVALID_PARAM", "id", "acme"},
		{"claimed server", "/operators", `{"id":"x","name":"X","server_names":["x.example","acme.example"],"contact":"a@x.example"}`, 409, "M_INVALID_PARAM", "server_names", "acme.example"},
		{"suspend without reason", "/operators/acme/suspend", `{}`, 400, "M_INVALID_PARAM", "reason", "reason"},
		{"revoke without body", "/operators/acme/revoke", ``, 400, "M_INVALID_PARAM", "reason", "reason"},
		{"not JSON", "/operators", `{"id":`, 400, "M_NOT_JSON", "", ""},
		{"array body", "/operators", `["acme"]`, 400, "M_BAD_JSON", "", "object"},
		{"wrong type", "/operators", `{"id":"x","name":"X","server_names":"x.example","contact":"a@x.example"}`, 400, "M_BAD_JSON", "server_names", "server_names"},
		{"unknown field", "/operators", `{"id":"x","name":"X","server_name":["x.example"],"contact":"a@x.example"}`, 400, "M_BAD_JSON", "", "server_name"},
		{"too large", "/operators", `{"id":"x","name":"` + strings.Repeat("a", maxBodyBytes) + `"}`, 413, "M_TOO_LARGE", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, admin, "POST", base+c.path, c.body)
			r.wantErr(t, c.name, c.status, c.errcode)
			if got, _ := r.body["field"].(string); got != c.field {
				t.Errorf("field = %q, want %q (%s)", got, c.field, r.raw)
			}
			if msg, _ := r.body["error"].(string); !strings.Contains(msg, c.mention) {
				t.Errorf("message %q does not mention %q", msg, c.mention)
			}
		})
	}
	// None of the refused requests changed anything.
	r := e.do(t, admin, "GET", base+"/operators", "")
	if ops, _ := r.body["operators"].([]any); len(ops) != 1 || ops[0].(map[string]any)["status"] != "active" {
		t.Fatalf("after refused requests: %s", r.raw)
	}
}

func TestUnrecognized(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", base + "/", 404, ""},
		{"GET", base + "/users", 404, ""},
		{"GET", base + "/operators/acme/history", 404, ""},
		{"GET", base + "/operators/", 404, ""},
		{"DELETE", base + "/operators", 405, "GET, POST"},
		{"DELETE", base + "/operators/acme", 405, "GET"},
		{"GET", base + "/operators/acme/suspend", 405, "POST"},
		{"PUT", base + "/operators/acme/revoke", 405, "POST"},
	} {
		r := e.do(t, "admin-token", c.method, c.path, "")
		r.wantErr(t, c.method+" "+c.path, c.status, "M_UNRECOGNIZED")
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}
