package clientapi

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"
)

func TestLimitExceeded(t *testing.T) {
	for _, tt := range []struct {
		retry      time.Duration
		ms         int64
		retryAfter string
	}{
		{time.Nanosecond, 1, "1"},
		{0, 1, "1"},
		{1500 * time.Millisecond, 1500, "2"},
		{1500*time.Millisecond + time.Microsecond, 1501, "2"},
		{time.Minute, 60000, "60"},
	} {
		w := httptest.NewRecorder()
		writeErr(w, LimitExceeded(tt.retry))
		var body struct {
			ErrCode      string `json:"errcode"`
			RetryAfterMS int64  `json:"retry_after_ms"`
			Code         string `json:"eimis_code"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != 429 || body.ErrCode != "M_LIMIT_EXCEEDED" || body.RetryAfterMS != tt.ms ||
			body.Code != "EIMIS_RATE_LIMITED" || w.Header().Get("Retry-After") != tt.retryAfter {
			t.Errorf("LimitExceeded(%v): %d %s Retry-After %q", tt.retry, w.Code, w.Body, w.Header().Get("Retry-After"))
		}
	}
}
