package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/errclass"
)

const server = "hub.test"

// tokens are the fake access tokens the test authenticator knows.
var tokens = map[string]string{"tok-alice": "@alice:hub.test", "tok-bob": "@bob:hub.test"}

var errDBDown = errors.New("database unreachable")

// The log names errors by class (errclass): a sentinel by its fixed text.
func init() { errclass.Register(errDBDown) }

// testAuth behaves like the hub's: Bearer header or access_token query,
// RespErrors for a missing or unknown token. "tok-broken" simulates a
// failing session store.
func testAuth(r *http.Request) (string, error) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" {
		tok = r.URL.Query().Get("access_token")
	}
	switch user, ok := tokens[tok]; {
	case tok == "":
		return "", mautrix.MMissingToken.WithMessage("Missing access token")
	case tok == "tok-broken":
		return "", errDBDown
	case tok == "tok-nostatus":
		return "", mautrix.RespError{ErrCode: "M_UNKNOWN_TOKEN", Err: "expired"}
	case !ok:
		return "", mautrix.MUnknownToken.WithMessage("Unknown access token")
	default:
		return user, nil
	}
}

type testServer struct {
	*httptest.Server
	svc   *Service
	store *DiskStore
	logs  *bytes.Buffer
}

func startServer(t testing.TB, maxUpload int64) *testServer {
	t.Helper()
	st, err := NewDiskStore(filepath.Join(t.TempDir(), "media"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := New(st, Config{ServerName: server, MaxUploadBytes: maxUpload}, log)
	mux := http.NewServeMux()
	svc.Register(mux, testAuth)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, svc: svc, store: st, logs: logs}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type req struct {
	method, path, token, contentType string
	body                             io.Reader
	header                           map[string]string
}

func (s *testServer) do(t testing.TB, r req) *http.Response {
	t.Helper()
	hr, err := http.NewRequest(r.method, s.URL+r.path, r.body)
	if err != nil {
		t.Fatal(err)
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.contentType != "" {
		hr.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// upload posts content and returns the media ID.
func (s *testServer) upload(t testing.TB, token, contentType, filename string, content []byte) string {
	t.Helper()
	p := "/_matrix/media/v3/upload"
	if filename != "" {
		p += "?filename=" + url.QueryEscape(filename)
	}
	resp := s.do(t, req{method: "POST", path: p, token: token, contentType: contentType, body: bytes.NewReader(content)})
	var out struct {
		ContentURI string `json:"content_uri"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body(resp))
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	mediaID, ok := strings.CutPrefix(out.ContentURI, "mxc://"+server+"/")
	if !ok || len(mediaID) < 24 || !ValidID(mediaID) {
		t.Fatalf("content_uri = %q", out.ContentURI)
	}
	return mediaID
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// errcode checks a Matrix error answer.
func errcode(t testing.TB, resp *http.Response, status int, code string) {
	t.Helper()
	b := body(resp)
	var e struct {
		ErrCode string `json:"errcode"`
	}
	_ = json.Unmarshal([]byte(b), &e)
	if resp.StatusCode != status || e.ErrCode != code {
		t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, status, code)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q", ct)
	}
}

// storedFiles lists every file the store holds, temporary ones included.
func (s *testServer) storedFiles(t testing.TB) []string {
	t.Helper()
	return files(t, s.store.Dir())
}

func pngBytes(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 8, 6))
	for x := range 8 {
		img.Set(x, x%6, color.RGBA{R: 200, A: 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pdfBytes is a small but well-formed PDF with binary content, as
// scanners produce.
func pdfBytes() []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
	b.WriteString("2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n")
	for i := range 4096 {
		b.WriteByte(byte(i * 7))
	}
	b.WriteString("\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")
	return b.Bytes()
}

func TestUploadDownloadRoundTrip(t *testing.T) {
	s := startServer(t, 0)
	for _, tc := range []struct {
		name, contentType, filename string
		content                     []byte
		wantType, wantDisposition   string
	}{
		{"PDF report", "application/pdf", "CR consultation Mme Dupont.pdf", pdfBytes(),
			"application/pdf", `attachment; filename="CR consultation Mme Dupont.pdf"`},
		{"PNG image", "image/png", "plaie J3.png", pngBytes(t),
			"image/png", `inline; filename="plaie J3.png"`},
		{"text, accented filename", "text/plain; charset=utf-8", "résultats.txt", []byte("Hb 13,2 g/dL\n"),
			"text/plain; charset=utf-8", "inline; filename*=utf-8''r%C3%A9sultats.txt"},
		{"no filename, no type", "", "", pngBytes(t), "image/png", "inline"},
		{"empty file", "application/octet-stream", "empty.bin", nil, "text/plain; charset=utf-8", "inline; filename=empty.bin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mediaID := s.upload(t, "tok-alice", tc.contentType, tc.filename, tc.content)
			// Another user of the hub downloads it (authenticated media).
			resp := s.do(t, req{method: "GET", path: "/_matrix/client/v1/media/download/" + server + "/" + mediaID, token: "tok-bob"})
			got := body(resp)
			if resp.StatusCode != 200 || got != string(tc.content) {
				t.Fatalf("download: %d, %d bytes (want %d)", resp.StatusCode, len(got), len(tc.content))
			}
			h := resp.Header
			sum := sha256.Sum256(tc.content)
			for k, want := range map[string]string{
				"Content-Type":                 tc.wantType,
				"Content-Disposition":          tc.wantDisposition,
				"Content-Length":               fmt.Sprint(len(tc.content)),
				"X-Content-Type-Options":       "nosniff",
				"Content-Security-Policy":      cspHeader,
				"Cross-Origin-Resource-Policy": "cross-origin",
				"Cache-Control":                "no-store",
				"Etag":                         `"` + hex.EncodeToString(sum[:]) + `"`,
			} {
				if h.Get(k) != want {
					t.Errorf("%s = %q, want %q", k, h.Get(k), want)
				}
			}
			m, err := s.store.Metadata(context.Background(), mediaID)
			if err != nil || m.Uploader != "@alice:hub.test" || m.Size != int64(len(tc.content)) ||
				m.SHA256 != hex.EncodeToString(sum[:]) || m.CreatedAt.IsZero() || m.Pending {
				t.Fatalf("metadata %+v, %v", m, err)
			}
		})
	}
	// Filenames may name patients: never in the logs.
	for _, secret := range []string{"Dupont", "plaie", "sultats"} {
		if strings.Contains(s.logs.String(), secret) {
			t.Errorf("logs contain the filename fragment %q:\n%s", secret, s.logs)
		}
	}
	if !strings.Contains(s.logs.String(), "media uploaded") {
		t.Errorf("uploads not logged:\n%s", s.logs)
	}
}

func TestDownloadFileNameOverride(t *testing.T) {
	s := startServer(t, 0)
	mediaID := s.upload(t, "tok-alice", "application/pdf", "original.pdf", pdfBytes())
	for _, tc := range []struct{ name, want string }{
		{"renamed.pdf", `attachment; filename=renamed.pdf`},
		{"..%2F..%2Fetc%2Fpasswd", `attachment; filename=passwd`},
		{"%E2%80%AEfdp.exe", `attachment; filename=fdp.exe`},
	} {
		resp := s.do(t, req{method: "GET", path: "/_matrix/client/v1/media/download/" + server + "/" + mediaID + "/" + tc.name, token: "tok-bob"})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Disposition") != tc.want {
			t.Errorf("%s: %d, Content-Disposition %q, want %q", tc.name, resp.StatusCode, resp.Header.Get("Content-Disposition"), tc.want)
		}
	}
}

// TestDangerousContent: what a browser would render as a page is never
// served inline, whatever the uploader claimed.
func TestDangerousContent(t *testing.T) {
	s := startServer(t, 0)
	html := []byte("<html><body><script>fetch('/steal?'+document.cookie)</script></body></html>")
	svg := []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)
	for _, tc := range []struct {
		name, claimed string
		content       []byte
		wantType      string
	}{
		{"HTML disguised as PNG", "image/png", html, "text/html; charset=utf-8"},
		{"HTML disguised as text", "text/plain", html, "text/html; charset=utf-8"},
		{"HTML as itself", "text/html", html, "text/html"},
		{"SVG as itself", "image/svg+xml", svg, "image/svg+xml"},
		{"XHTML", "application/xhtml+xml", html, "application/xhtml+xml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mediaID := s.upload(t, "tok-alice", tc.claimed, "x", tc.content)
			resp := s.do(t, req{method: "GET", path: "/_matrix/client/v1/media/download/" + server + "/" + mediaID, token: "tok-alice"})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.wantType {
				t.Errorf("Content-Type = %q, want %q", ct, tc.wantType)
			}
			if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
				t.Errorf("Content-Disposition = %q, want attachment", cd)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "sandbox;") {
				t.Errorf("safety headers missing: %v", resp.Header)
			}
			// No thumbnail of a page, even if it claimed to be an image.
			resp = s.do(t, req{method: "GET", path: "/_matrix/client/v1/media/thumbnail/" + server + "/" + mediaID + "?width=32&height=32", token: "tok-alice"})
			errcode(t, resp, 400, "M_UNKNOWN")
		})
	}
}

// TestTooLarge: over the limit is 413 M_TOO_LARGE, and nothing stays on
// disk, whether the client announced the length or streamed it.
func TestTooLarge(t *testing.T) {
	const limit = 1 << 20
	s := startServer(t, limit)
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		// bytes.Reader: Content-Length is known, refused before reading.
		{"announced length", func() io.Reader { return bytes.NewReader(make([]byte, limit+1)) }},
		// A bare reader: chunked, refused while streaming.
		{"chunked", func() io.Reader { return io.LimitReader(zeros{}, 3*limit) }},
		{"chunked, one byte over", func() io.Reader { return io.LimitReader(zeros{}, limit+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []string{"/_matrix/media/v3/upload", "/_matrix/media/r0/upload?filename=big.bin"} {
				resp := s.do(t, req{method: "POST", path: p, token: "tok-alice", contentType: "application/octet-stream", body: tc.body()})
				errcode(t, resp, 413, "M_TOO_LARGE")
			}
			if left := s.storedFiles(t); len(left) != 0 {
				t.Fatalf("files left after refused uploads: %v", left)
			}
		})
	}
	// Exactly at the limit is accepted.
	s.upload(t, "tok-alice", "application/octet-stream", "", make([]byte, limit))

	// The async upload enforces the same limit, and the ID stays usable.
	uri := s.create(t, "tok-alice")
	resp := s.do(t, req{method: "PUT", path: "/_matrix/media/v3/upload/" + server + "/" + uri, token: "tok-alice", body: io.LimitReader(zeros{}, 2*limit)})
	errcode(t, resp, 413, "M_TOO_LARGE")
	resp = s.do(t, req{method: "PUT", path: "/_matrix/media/v3/upload/" + server + "/" + uri, token: "tok-alice", body: strings.NewReader("ok")})
	if resp.StatusCode != 200 {
		t.Fatalf("retry after too large: %d %s", resp.StatusCode, body(resp))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestNotFound(t *testing.T) {
	s := startServer(t, 0)
	mediaID := s.upload(t, "tok-alice", "image/png", "", pngBytes(t))
	for _, p := range []string{
		"/_matrix/client/v1/media/download/" + server + "/unknownmediaid0000000000",
		"/_matrix/client/v1/media/download/" + server + "/unknownmediaid0000000000/x.pdf",
		"/_matrix/client/v1/media/thumbnail/" + server + "/unknownmediaid0000000000?width=32&height=32",
		// Another server's media: no federation yet.
		"/_matrix/client/v1/media/download/matrix.org/" + mediaID,
		"/_matrix/client/v1/media/thumbnail/matrix.org/" + mediaID + "?width=32&height=32",
		// Not a media ID (the spec's traversal rule).
		"/_matrix/client/v1/media/download/" + server + "/..%2F..%2Fetc%2Fpasswd",
		"/_matrix/client/v1/media/download/" + server + "/" + mediaID + ".json",
		"/_matrix/client/v1/media/download/" + server + "/" + strings.ToUpper(mediaID),
	} {
		t.Run(p, func(t *testing.T) {
			errcode(t, s.do(t, req{method: "GET", path: p, token: "tok-alice"}), 404, "M_NOT_FOUND")
		})
	}
}

// TestLegacyFrozen: the deprecated unauthenticated endpoints serve
// nothing (Matrix v1.11 freeze), with or without a token, and do not tell
// whether the ID exists.
func TestLegacyFrozen(t *testing.T) {
	s := startServer(t, 0)
	mediaID := s.upload(t, "tok-alice", "image/png", "a.png", pngBytes(t))
	for _, v := range []string{"v3", "r0"} {
		for _, p := range []string{
			"/download/" + server + "/" + mediaID,
			"/download/" + server + "/" + mediaID + "/a.png",
			"/thumbnail/" + server + "/" + mediaID + "?width=32&height=32",
			"/download/" + server + "/doesnotexist",
		} {
			for _, tok := range []string{"", "tok-alice"} {
				errcode(t, s.do(t, req{method: "GET", path: "/_matrix/media/" + v + p, token: tok}), 404, "M_NOT_FOUND")
			}
		}
	}
}

func TestAuthRequired(t *testing.T) {
	s := startServer(t, 0)
	mediaID := s.upload(t, "tok-alice", "image/png", "", pngBytes(t))
	dl := "/_matrix/client/v1/media/download/" + server + "/" + mediaID
	endpoints := []req{
		{method: "POST", path: "/_matrix/media/v3/upload", body: strings.NewReader("x")},
		{method: "POST", path: "/_matrix/media/r0/upload", body: strings.NewReader("x")},
		{method: "POST", path: "/_matrix/media/v1/create"},
		{method: "PUT", path: "/_matrix/media/v3/upload/" + server + "/" + mediaID, body: strings.NewReader("x")},
		{method: "GET", path: dl},
		{method: "GET", path: dl + "/name.png"},
		{method: "GET", path: "/_matrix/client/v1/media/thumbnail/" + server + "/" + mediaID + "?width=1&height=1"},
		{method: "GET", path: "/_matrix/client/v1/media/config"},
		{method: "GET", path: "/_matrix/media/v3/config"},
		{method: "GET", path: "/_matrix/client/v1/media/preview_url?url=https://example.org"},
	}
	for _, tc := range []struct {
		token, code string
		status      int
	}{
		{"", "M_MISSING_TOKEN", 401},
		{"tok-mallory", "M_UNKNOWN_TOKEN", 401},
		{"tok-nostatus", "M_UNKNOWN_TOKEN", 401}, // a RespError without status still gets 401
		{"tok-broken", "M_UNKNOWN", 500},
	} {
		for _, e := range endpoints {
			e.token = tc.token
			t.Run(tc.code+" "+e.method+" "+e.path, func(t *testing.T) {
				errcode(t, s.do(t, e), tc.status, tc.code)
			})
		}
	}
	if !strings.Contains(s.logs.String(), errDBDown.Error()) {
		t.Error("authenticator failure not logged")
	}
	// The query-string token still works (deprecated, but in the spec).
	resp := s.do(t, req{method: "GET", path: dl + "?access_token=tok-bob"})
	if resp.StatusCode != 200 {
		t.Fatalf("access_token query: %d", resp.StatusCode)
	}
}

func TestConcurrentUploads(t *testing.T) {
	s := startServer(t, 0)
	const n = 32
	var wg sync.WaitGroup
	ids := make([]string, n)
	contents := make([][]byte, n)
	errs := make(chan error, n)
	for i := range n {
		contents[i] = bytes.Repeat([]byte(fmt.Sprintf("document %d ", i)), 20_000+i*1000)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.DefaultClient.Do(func() *http.Request {
				r, _ := http.NewRequest("POST", s.URL+"/_matrix/media/v3/upload", bytes.NewReader(contents[i]))
				r.Header.Set("Authorization", "Bearer tok-alice")
				r.Header.Set("Content-Type", "text/plain")
				return r
			}())
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var out struct {
				ContentURI string `json:"content_uri"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
				errs <- fmt.Errorf("upload %d: %d %v", i, resp.StatusCode, err)
				return
			}
			ids[i] = strings.TrimPrefix(out.ContentURI, "mxc://"+server+"/")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, id := range ids {
		if seen[id] {
			t.Fatalf("media ID %s handed out twice", id)
		}
		seen[id] = true
		resp := s.do(t, req{method: "GET", path: "/_matrix/client/v1/media/download/" + server + "/" + id, token: "tok-bob"})
		if got := body(resp); got != string(contents[i]) {
			t.Fatalf("download %d: %d bytes, want %d", i, len(got), len(contents[i]))
		}
	}
	if got := len(s.storedFiles(t)); got != 2*n {
		t.Fatalf("%d files stored, want %d (content + metadata each)", got, 2*n)
	}
}

// create reserves a media ID through the API.
func (s *testServer) create(t testing.TB, token string) string {
	t.Helper()
	resp := s.do(t, req{method: "POST", path: "/_matrix/media/v1/create", token: token})
	var out struct {
		ContentURI      string `json:"content_uri"`
		UnusedExpiresAt int64  `json:"unused_expires_at"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("create: %d %s", resp.StatusCode, body(resp))
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	exp := time.UnixMilli(out.UnusedExpiresAt)
	if d := time.Until(exp); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("unused_expires_at in %v, want about 24h", d)
	}
	mediaID, ok := strings.CutPrefix(out.ContentURI, "mxc://"+server+"/")
	if !ok || !ValidID(mediaID) {
		t.Fatalf("content_uri %q", out.ContentURI)
	}
	return mediaID
}

// TestAsyncUpload: POST /create, then PUT the content; a download started
// before the content arrives waits for it.
func TestAsyncUpload(t *testing.T) {
	s := startServer(t, 0)
	mediaID := s.create(t, "tok-alice")
	dl := "/_matrix/client/v1/media/download/" + server + "/" + mediaID
	put := "/_matrix/media/v3/upload/" + server + "/" + mediaID + "?filename=scan.pdf"

	// Not yet uploaded, and the client will not wait.
	errcode(t, s.do(t, req{method: "GET", path: dl + "?timeout_ms=0", token: "tok-bob"}), 504, "M_NOT_YET_UPLOADED")

	// A download waiting for the content gets it as soon as it lands.
	type result struct {
		status int
		body   string
	}
	waiting := make(chan result, 1)
	go func() {
		r, _ := http.NewRequest("GET", s.URL+dl+"?timeout_ms=10000", nil)
		r.Header.Set("Authorization", "Bearer tok-bob")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			waiting <- result{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		waiting <- result{resp.StatusCode, body(resp)}
	}()
	time.Sleep(50 * time.Millisecond) // let the download start waiting (the test passes without it too)

	// Only the user who created the ID may upload to it.
	errcode(t, s.do(t, req{method: "PUT", path: put, token: "tok-bob", body: strings.NewReader("intrus")}), 403, "M_FORBIDDEN")
	// Not our server's ID.
	errcode(t, s.do(t, req{method: "PUT", path: "/_matrix/media/v3/upload/matrix.org/" + mediaID, token: "tok-alice", body: strings.NewReader("x")}), 404, "M_NOT_FOUND")
	// Never created.
	errcode(t, s.do(t, req{method: "PUT", path: "/_matrix/media/v3/upload/" + server + "/neverCreated0000000000000", token: "tok-alice", body: strings.NewReader("x")}), 404, "M_NOT_FOUND")

	start := time.Now()
	resp := s.do(t, req{method: "PUT", path: put, token: "tok-alice", contentType: "application/pdf", body: bytes.NewReader(pdfBytes())})
	if resp.StatusCode != 200 || strings.TrimSpace(body(resp)) != "{}" {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	got := <-waiting
	if got.status != 200 || got.body != string(pdfBytes()) {
		t.Fatalf("waiting download: %d, %d bytes", got.status, len(got.body))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waiting download took %v after the upload", d)
	}

	// Media is immutable: a second PUT is refused.
	errcode(t, s.do(t, req{method: "PUT", path: put, token: "tok-alice", body: strings.NewReader("replaced")}), 409, "M_CANNOT_OVERWRITE_MEDIA")
	resp = s.do(t, req{method: "GET", path: dl, token: "tok-bob"})
	if body(resp) != string(pdfBytes()) || resp.Header.Get("Content-Disposition") != "attachment; filename=scan.pdf" {
		t.Fatalf("after refused overwrite: %v", resp.Header)
	}

	// An ID from the synchronous upload cannot be PUT to either.
	synced := s.upload(t, "tok-alice", "text/plain", "", []byte("x"))
	errcode(t, s.do(t, req{method: "PUT", path: "/_matrix/media/v3/upload/" + server + "/" + synced, token: "tok-alice", body: strings.NewReader("y")}), 409, "M_CANNOT_OVERWRITE_MEDIA")
}

func TestAsyncUploadExpiry(t *testing.T) {
	s := startServer(t, 0)
	mediaID := s.create(t, "tok-alice")
	now := time.Now()
	s.svc.now = func() time.Time { return now.Add(PendingLifetime + time.Minute) }
	errcode(t, s.do(t, req{method: "GET", path: "/_matrix/client/v1/media/download/" + server + "/" + mediaID, token: "tok-alice"}), 404, "M_NOT_FOUND")
	errcode(t, s.do(t, req{method: "PUT", path: "/_matrix/media/v3/upload/" + server + "/" + mediaID, token: "tok-alice", body: strings.NewReader("late")}), 404, "M_NOT_FOUND")
}

func TestThumbnail(t *testing.T) {
	s := startServer(t, 0)
	img := pngBytes(t)
	imgID := s.upload(t, "tok-alice", "image/png", "plaie Mme Dupont.png", img)
	pdfID := s.upload(t, "tok-alice", "application/pdf", "cr.pdf", pdfBytes())
	th := "/_matrix/client/v1/media/thumbnail/" + server + "/"

	resp := s.do(t, req{method: "GET", path: th + imgID + "?width=32&height=32&method=crop", token: "tok-bob"})
	if resp.StatusCode != 200 || body(resp) != string(img) {
		t.Fatalf("thumbnail: %d", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":           "image/png",
		"Content-Disposition":    "inline; filename=thumbnail.png", // not the patient's name
		"X-Content-Type-Options": "nosniff",
	} {
		if resp.Header.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, resp.Header.Get(k), want)
		}
	}
	errcode(t, s.do(t, req{method: "GET", path: th + pdfID + "?width=32&height=32", token: "tok-bob"}), 400, "M_UNKNOWN")
	for _, q := range []string{"", "?width=32", "?width=0&height=32", "?width=-1&height=32", "?width=a&height=32", "?width=32&height=32&method=stretch"} {
		errcode(t, s.do(t, req{method: "GET", path: th + imgID + q, token: "tok-bob"}), 400, "M_INVALID_PARAM")
	}
}

func TestConfigAndPreview(t *testing.T) {
	s := startServer(t, 0)
	for _, p := range []string{"/_matrix/client/v1/media/config", "/_matrix/media/v3/config", "/_matrix/media/r0/config"} {
		resp := s.do(t, req{method: "GET", path: p, token: "tok-alice"})
		var cfg map[string]int64
		if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil || cfg["m.upload.size"] != DefaultMaxUploadBytes {
			t.Fatalf("%s: %v %v", p, cfg, err)
		}
	}
	for _, p := range []string{"/_matrix/client/v1/media/preview_url?url=http://169.254.169.254/", "/_matrix/media/v3/preview_url?url=https://example.org"} {
		resp := s.do(t, req{method: "GET", path: p, token: "tok-alice"})
		if got := strings.TrimSpace(body(resp)); resp.StatusCode != 200 || got != "{}" {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, got)
		}
	}
}

// TestRangeAndConditional: video seeking and resumed downloads (Range),
// revalidation by ETag.
func TestRangeAndConditional(t *testing.T) {
	s := startServer(t, 0)
	content := []byte("0123456789abcdefghij")
	mediaID := s.upload(t, "tok-alice", "video/mp4", "", content)
	dl := "/_matrix/client/v1/media/download/" + server + "/" + mediaID
	resp := s.do(t, req{method: "GET", path: dl, token: "tok-alice", header: map[string]string{"Range": "bytes=5-9"}})
	if resp.StatusCode != 206 || body(resp) != "56789" || resp.Header.Get("Content-Range") != "bytes 5-9/20" {
		t.Fatalf("range: %d %v", resp.StatusCode, resp.Header)
	}
	etag := resp.Header.Get("ETag")
	resp = s.do(t, req{method: "GET", path: dl, token: "tok-alice", header: map[string]string{"If-None-Match": etag}})
	if resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	resp = s.do(t, req{method: "HEAD", path: dl, token: "tok-alice"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "20" {
		t.Fatalf("HEAD: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestUploadConstantMemory: a large upload streams to disk; the heap
// does not grow with the file.
func TestUploadConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 48 MiB")
	}
	s := startServer(t, 0)
	const size = 48 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp := s.do(t, req{method: "POST", path: "/_matrix/media/v3/upload", token: "tok-alice", contentType: "application/octet-stream", body: io.LimitReader(zeros{}, size)})
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body(resp))
	}
	runtime.ReadMemStats(&after)
	// TotalAlloc counts every allocation (client and server sides of the
	// test included), so it bounds the peak too.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Fatalf("uploading %d MiB allocated %d MiB", size>>20, alloc>>20)
	}
}
