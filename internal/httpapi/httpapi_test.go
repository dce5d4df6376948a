package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/door"
)

func TestCORS(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := WithCORS(next)
	for _, c := range []struct {
		method, path string
		open         bool
		status       int
	}{
		{"GET", "/_matrix/client/v3/sync", true, http.StatusTeapot},
		{"OPTIONS", "/_matrix/client/v3/login", true, http.StatusOK},
		{"OPTIONS", "/_matrix/media/v3/upload", true, http.StatusOK},
		{"OPTIONS", "/_eimis/client/v1/bindings", true, http.StatusOK},
		{"OPTIONS", "/_eimis/admin/v1/operators", false, http.StatusTeapot},
		{"GET", "/_eimis/bridge/v1", false, http.StatusTeapot},
		{"GET", "/_eimis/clientx", false, http.StatusTeapot},
		{"GET", "/metrics", true, http.StatusTeapot},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if got := rec.Header().Get("Access-Control-Allow-Origin") == "*"; got != c.open || rec.Code != c.status {
			t.Errorf("%s %s: open %v status %d, want %v %d", c.method, c.path, got, rec.Code, c.open, c.status)
		}
	}
}

func TestRequestID(t *testing.T) {
	var rid string
	var d door.Door
	h := WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid, d = RequestID(r.Context()), door.From(r.Context())
	}))
	for _, c := range []struct {
		name, header string
		keep         bool
	}{
		{"from the proxy", "abc-123:x.y_z", true},
		{"none", "", false},
		{"malformed", "a b", false},
		{"too long", strings.Repeat("a", 65), false},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			req.Header.Set(RequestIDHeader, c.header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rid == "" || rec.Header().Get(RequestIDHeader) != rid || (rid == c.header) != c.keep {
			t.Errorf("%s: request ID %q, echoed %q", c.name, rid, rec.Header().Get(RequestIDHeader))
		}
		if d != door.Of(door.Client, "") {
			t.Errorf("%s: door %v, want the anonymous client door", c.name, d)
		}
	}
}

func TestTokens(t *testing.T) {
	for _, c := range []struct {
		name, auth, query string
		access, bearer    string
		inURL             bool
	}{
		{"header", "Bearer tok", "", "tok", "tok", false},
		{"header with spaces", "Bearer  tok ", "", "tok", "tok", false},
		{"query", "", "access_token=q", "q", "", true},
		{"header wins", "Bearer h", "access_token=q", "h", "h", true},
		{"another scheme", "Basic xyz", "access_token=q", "", "", true},
		{"none", "", "", "", "", false},
	} {
		req := httptest.NewRequest("GET", "/x?"+c.query, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		if a, b, u := AccessToken(req), BearerToken(req), TokenInURL(req); a != c.access || b != c.bearer || u != c.inURL {
			t.Errorf("%s: access %q bearer %q in URL %v", c.name, a, b, u)
		}
	}
}

// TestInternal: an internal error is answered 500 M_UNKNOWN and logged by
// class, never with the error's text; a cancelled request is neither.
func TestInternal(t *testing.T) {
	const secret = "PATIENT-DUPONT"
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	req := httptest.NewRequest("POST", "/x/"+secret, nil)
	rec := httptest.NewRecorder()
	Internal(log, rec, req, fmt.Errorf("store: %s: %w", secret, errors.New("boom")), "media_id", "m1")
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusInternalServerError || body["errcode"] != "M_UNKNOWN" || strings.Contains(rec.Body.String(), secret) {
		t.Fatalf("answer %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "internal error") || !strings.Contains(logs.String(), "media_id=m1") || strings.Contains(logs.String(), secret) {
		t.Fatalf("log %q", logs.String())
	}

	logs.Reset()
	rec = httptest.NewRecorder()
	Internal(log, rec, req, fmt.Errorf("x: %w", context.Canceled))
	if logs.Len() != 0 || rec.Body.Len() != 0 {
		t.Fatalf("a cancelled request: log %q, answer %q", logs.String(), rec.Body)
	}
}

func TestRefuse(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"missing token without status", mautrix.RespError{ErrCode: "M_MISSING_TOKEN"}, 401, "M_MISSING_TOKEN"},
		{"unknown token", mautrix.MUnknownToken.WithMessage("no"), 401, "M_UNKNOWN_TOKEN"},
		{"forbidden without status", mautrix.RespError{ErrCode: "M_FORBIDDEN"}, 403, "M_FORBIDDEN"},
		{"wrapped", fmt.Errorf("auth: %w", mautrix.RespError{ErrCode: "M_FORBIDDEN", StatusCode: 403}), 403, "M_FORBIDDEN"},
		{"pointer", &mautrix.RespError{ErrCode: "M_UNKNOWN_TOKEN"}, 401, "M_UNKNOWN_TOKEN"},
		{"its own status", mautrix.MLimitExceeded.WithStatus(429), 429, "M_LIMIT_EXCEEDED"},
		{"not a Matrix error", errors.New("db down"), 500, "M_UNKNOWN"},
	} {
		rec := httptest.NewRecorder()
		Refuse(log, rec, httptest.NewRequest("GET", "/", nil), c.err)
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != c.status || body["errcode"] != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, rec.Code, body["errcode"], c.status, c.code)
		}
	}
}
