package httpjson

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"maunium.net/go/mautrix"
)

func TestError(t *testing.T) {
	for _, c := range []struct {
		name string
		err  mautrix.RespError
		want int
	}{
		{"no status is 400", mautrix.MBadJSON.WithMessage("bad"), http.StatusBadRequest},
		{"its own status", mautrix.MForbidden.WithStatus(http.StatusForbidden).WithMessage("no"), http.StatusForbidden},
		{"extra fields and headers kept", mautrix.MLimitExceeded.WithStatus(http.StatusTooManyRequests).
			WithExtraField("retry_after_ms", 5).WithExtraHeader("Retry-After", "1"), http.StatusTooManyRequests},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Error(rec, c.err)
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != c.want || body["errcode"] != c.err.ErrCode || rec.Header().Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("got %d %v (ACAO %q)", rec.Code, body, rec.Header().Get("Access-Control-Allow-Origin"))
			}
			for k, v := range c.err.ExtraHeader {
				if rec.Header().Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, rec.Header().Get(k), v)
				}
			}
			for k, v := range c.err.ExtraData {
				if body[k] == nil || body[k] != float64(v.(int)) {
					t.Errorf("extra field %s = %v, want %v", k, body[k], v)
				}
			}
		})
	}
}
