package media

import (
	"bytes"
	"errors"
	"net/http"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
)

// The upload gate sees every way of adding content (upload, create,
// upload to a reserved ID) before the body is read, and its refusal is
// the answer, with nothing stored.
func TestUploadGate(t *testing.T) {
	s := startServer(t, 1<<20)
	reserved := s.create(t, "tok-alice")
	var mu sync.Mutex
	var seen []string
	refuse := false
	s.svc.SetUploadGate(func(r *http.Request, uploader string) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Method+" "+uploader)
		if refuse {
			return mautrix.MLimitExceeded.WithMessage("slow down").WithExtraField("retry_after_ms", 1500).
				WithExtraHeader("Retry-After", "2")
		}
		return nil
	})
	s.upload(t, "tok-bob", "text/plain", "", []byte("allowed"))
	before := s.storedFiles(t)

	mu.Lock()
	refuse = true
	mu.Unlock()
	for _, rq := range []req{
		{method: "POST", path: "/_matrix/media/v3/upload", token: "tok-alice", contentType: "text/plain", body: bytes.NewReader([]byte("x"))},
		{method: "POST", path: "/_matrix/media/v1/create", token: "tok-alice"},
		{method: "PUT", path: "/_matrix/media/v3/upload/" + server + "/" + reserved, token: "tok-alice", contentType: "text/plain", body: bytes.NewReader([]byte("x"))},
	} {
		resp := s.do(t, rq)
		if got := resp.Header.Get("Retry-After"); got != "2" {
			t.Errorf("%s %s: Retry-After %q", rq.method, rq.path, got)
		}
		errcode(t, resp, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	}
	if after := s.storedFiles(t); len(after) != len(before) {
		t.Fatalf("a refused upload stored something: %v -> %v", before, after)
	}
	mu.Lock()
	if len(seen) != 4 || seen[0] != "POST @bob:hub.test" || seen[3] != "PUT @alice:hub.test" {
		t.Errorf("gate saw %v", seen)
	}
	mu.Unlock()

	// Any other error from the gate is an internal error, logged.
	s.svc.SetUploadGate(func(*http.Request, string) error { return errors.New("limiter broken") })
	resp := s.do(t, req{method: "POST", path: "/_matrix/media/v1/create", token: "tok-alice"})
	errcode(t, resp, http.StatusInternalServerError, "M_UNKNOWN")
}
