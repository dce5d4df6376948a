package hub_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// call makes one Client-Server API request with token ("" for none) and
// returns the status and the JSON object answered (nil if not one). body
// is sent as it is when a string, as JSON otherwise, nothing when nil.
func call(t *testing.T, base, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// wantErr fails unless a call answered status with errcode.
func wantErr(t *testing.T, what string, status int, out map[string]any, wantStatus int, errcode string) {
	t.Helper()
	if status != wantStatus || out["errcode"] != errcode {
		t.Fatalf("%s: %d %v, want %d %s", what, status, out, wantStatus, errcode)
	}
}
