package hub_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// call makes one Client-Server API request with token ("" for none) and
// returns the status and the JSON object answered (nil if not one). body
// is sent as it is when a string, as JSON otherwise, nothing when nil.
func call(t *testing.T, base, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	r := do(t, base, method, path, token, body)
	return r.status, r.body
}

// rawResp is one answer: status, headers and the JSON body.
type rawResp struct {
	status int
	header http.Header
	body   map[string]any
}

// do makes one request with body as JSON (a string or []byte is sent as
// is) and optional header name/value pairs.
func do(t *testing.T, base, method, path, token string, body any, header ...string) rawResp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := rawResp{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// wantErr fails unless a call answered status with errcode.
func wantErr(t *testing.T, what string, status int, out map[string]any, wantStatus int, errcode string) {
	t.Helper()
	if status != wantStatus || out["errcode"] != errcode {
		t.Fatalf("%s: %d %v, want %d %s", what, status, out, wantStatus, errcode)
	}
}
