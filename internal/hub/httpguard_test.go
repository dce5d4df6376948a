package hub_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/store"
)

// adminAccount creates an administration account and returns its token.
func adminAccount(t *testing.T, h *hubtest.Hub) string {
	t.Helper()
	ctx := ctxT(t)
	if err := h.Store.CreateServiceAccount(ctx, store.ServiceAccount{Localpart: "ops", Kind: store.KindAdmin, Name: "Exploitation"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.IDs.CreateAccount(ctx, "ops", "pw-ops", true); err != nil {
		t.Fatal(err)
	}
	return h.Client(t, "ops", "pw-ops").AccessToken
}

// TestAdminAPINotForBrowsersNorURLs: the admin API sends no CORS headers
// (a page in an admin's browser cannot call it), and refuses a token in
// the URL even when it is valid; the Matrix API keeps its CORS headers.
func TestAdminAPINotForBrowsersNorURLs(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ops := adminAccount(t, h)
	do := func(method, path, token string, hdr map[string]string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, h.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	origin := map[string]string{"Origin": "https://evil.example"}
	preflight := map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
	for _, c := range []struct {
		method, path, token string
		hdr                 map[string]string
	}{
		{"GET", "/_eimis/admin/v1/operators", ops, origin},
		{"GET", "/_eimis/admin/v1/operators", "", origin},
		{"OPTIONS", "/_eimis/admin/v1/operators", "", preflight},
		{"OPTIONS", "/_eimis/admin/v1/operators/acme/revoke", "", preflight},
		{"GET", "/_eimis/bridge/v1/ws", "", origin},
		{"GET", "/_eimis/health", "", origin},
	} {
		resp, _ := do(c.method, c.path, c.token, c.hdr)
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Fatalf("%s %s: CORS header %s: %s", c.method, c.path, k, resp.Header.Get(k))
			}
		}
		if c.method == "OPTIONS" && resp.StatusCode < 400 {
			t.Fatalf("preflight to the admin API answered %d", resp.StatusCode)
		}
	}
	if resp, _ := do("OPTIONS", "/_matrix/client/v3/login", "", preflight); resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("the Matrix API lost its CORS headers: %v", resp.Header)
	}
	// The practitioners' own API (their bindings) is for their clients,
	// browsers included, like the Matrix API.
	if resp, _ := do("OPTIONS", "/_eimis/client/v1/bindings/link_code", "", preflight); resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("the practitioners' bindings API has no CORS headers: %v", resp.Header)
	}

	// A token in the URL is refused, valid or not, with or without a
	// header beside it.
	for _, c := range []struct{ name, query, header string }{
		{"valid admin token in the URL", "?access_token=" + ops, ""},
		{"URL and header", "?access_token=" + ops, ops},
		{"unknown token in the URL", "?access_token=nope", ""},
	} {
		resp, out := do("GET", "/_eimis/admin/v1/operators"+c.query, c.header, nil)
		if resp.StatusCode != 401 || out["errcode"] != "M_MISSING_TOKEN" {
			t.Fatalf("%s: %d %v, want 401 M_MISSING_TOKEN", c.name, resp.StatusCode, out)
		}
	}
	if resp, out := do("GET", "/_eimis/admin/v1/operators", ops, nil); resp.StatusCode != 200 {
		t.Fatalf("header token: %d %v", resp.StatusCode, out)
	}
}

// TestOperatorCannotClaimTheHubsName: the admin API refuses an operator
// listing the hub's own server name, on any port; nothing is stored.
func TestOperatorCannotClaimTheHubsName(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ops := adminAccount(t, h)
	for i, servers := range [][]string{{"hub.test"}, {"hub.test:8448"}, {"acme.example", "hub.test"}} {
		id := fmt.Sprintf("impostor%d", i)
		st, out := call(t, h.URL, ops, "POST", "/_eimis/admin/v1/operators",
			map[string]any{"id": id, "name": "Impostor", "server_names": servers, "contact": "sec@impostor.example"})
		wantErr(t, fmt.Sprint(servers), st, out, 400, "M_INVALID_PARAM")
		if out["field"] != "server_names" || !strings.Contains(fmt.Sprint(out["error"]), "own server name") {
			t.Fatalf("%v: the error must say why: %v", servers, out)
		}
		if _, err := h.Operators.Get(ctxT(t), id); !errors.Is(err, operators.ErrNotFound) {
			t.Fatalf("refused operator stored: %v", err)
		}
	}
	if _, err := h.Operators.CheckServer("hub.test"); err == nil {
		t.Fatal("the hub's name is on the allow-list")
	}
}

// TestSlowRequestBodyIsCutOff: a client that sends its headers and then
// trickles the body is cut off once request_body_timeout passes, while a
// /sync long-poll that outlasts the timeout and an upload sent at a normal
// pace are unaffected.
func TestSlowRequestBodyIsCutOff(t *testing.T) {
	const timeout = time.Second
	h := hubtest.Start(t, hubtest.Options{Configure: func(c *config.Config) { c.RequestBodyTimeout = timeout }})
	alice := h.NewUser(t, "alice")
	addr := strings.TrimPrefix(h.URL, "http://")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const length = 100_000
	fmt.Fprintf(conn, "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", addr, length)
	// Trickle one byte each 50 ms: 100 KB would take well over an hour.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	switch {
	case err == nil:
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode < 400 {
			t.Fatalf("a trickled body was answered %d %s", resp.StatusCode, body)
		}
		// The connection is then closed by the server.
		if _, err := io.ReadAll(resp.Body); err != nil && !errors.Is(err, io.EOF) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the server kept the connection open")
			}
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// Closed without an answer: cut off as well.
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server was still reading the trickled body after %v", time.Since(start))
		}
		// A reset connection is a cut-off too.
	}
	if took := time.Since(start); took < timeout {
		t.Fatalf("cut off after %v, before the %v timeout", took, timeout)
	}

	// A long-poll outlasting the timeout (no body) is answered normally.
	if _, err := alice.CreateRoom(ctxT(t), &mautrix.ReqCreateRoom{Preset: "private_chat"}); err != nil {
		t.Fatal(err) // a stream position above 0, or every sync is an initial one
	}
	st, out := call(t, h.URL, alice.AccessToken, "GET", "/_matrix/client/v3/sync?timeout=0", nil)
	since, _ := out["next_batch"].(string)
	if st != 200 || since == "" {
		t.Fatalf("sync: %d %v", st, out)
	}
	waited := false
	for range 10 { // the first polls may return at once with what is new
		start = time.Now()
		st, out := call(t, h.URL, alice.AccessToken, "GET", "/_matrix/client/v3/sync?timeout=3000&since="+since, nil)
		if st != 200 {
			t.Fatalf("long-poll: %d %v", st, out)
		}
		since, _ = out["next_batch"].(string)
		if time.Since(start) >= 2*timeout {
			waited = true
			break
		}
	}
	if !waited {
		t.Fatal("no long-poll outlasted the body timeout: the test proves nothing")
	}
	// A 1 MiB upload sent at once goes through: the deadline moves on
	// with every 64 KiB received.
	req, _ := http.NewRequestWithContext(t.Context(), "POST", h.URL+"/_matrix/media/v3/upload?filename=scan.bin", bytes.NewReader(bytes.Repeat([]byte{0x5a}, 1<<20)))
	req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
	req.Header.Set("Content-Type", "application/octet-stream")
	up, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Body.Close()
	if body, _ := io.ReadAll(up.Body); up.StatusCode != 200 || !bytes.Contains(body, []byte("mxc://")) {
		t.Fatalf("upload: %d %s", up.StatusCode, body)
	}
}
