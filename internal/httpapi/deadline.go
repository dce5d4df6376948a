package httpapi

import (
	"io"
	"net/http"
	"time"
)

// bodyPace is how much of a body must arrive within each timeout.
const bodyPace = 64 << 10

// WithBodyDeadline cuts off clients that send a request body too slowly
// (headers at once, then a byte now and then, holding a connection and a
// goroutine each). http.Server.ReadTimeout would do it but also covers
// what comes after the body: it would end /sync long-polls and the bridge
// WebSocket, which has no body but lives on the same connection. So the
// deadline is set per request, only for requests with a body, and only
// while the body is read: the first 64 KiB (all of any JSON request) must
// arrive within timeout, and each following 64 KiB within timeout of the
// last, so a large upload is allowed as long as it keeps a minimal pace.
// Once the body is read the deadline is lifted: a handler may run as long
// as it needs. A body that times out fails to read, the handler answers
// as for any unreadable body, and the server closes the connection.
func WithBodyDeadline(timeout time.Duration, next http.Handler) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			// Not a real connection (an in-process test server): nothing
			// to protect.
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &pacedBody{ReadCloser: r.Body, rc: rc, timeout: timeout}
		next.ServeHTTP(w, r)
	})
}

// pacedBody extends the read deadline each bodyPace bytes and lifts it at
// the end of the body.
type pacedBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	since   int // bytes read since the deadline was last set
	done    bool
}

func (b *pacedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.done {
		return n, err
	}
	b.since += n
	switch {
	case err == io.EOF:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil:
		b.done = true // the connection is closed after this request
	case b.since >= bodyPace:
		b.since = 0
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	return n, err
}
