package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/federation/transport"
	"github.com/eimis-hub/eimis/federation/trustlist"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

// fakePeer is a remote Matrix server no one here runs: a TLS server on
// loopback publishing its key, with a client signing as it.
type fakePeer struct {
	name   string
	key    signingkey.Key
	client *federation.Client
}

func newFakePeer(t *testing.T, allow ...string) *fakePeer {
	t.Helper()
	p := &fakePeer{}
	var err error
	if p.key, err = signingkey.Generate(); err != nil {
		t.Fatal(err)
	}
	sk := &federation.SigningKey{ID: id.KeyID(p.key.ID), Pub: id.SigningKey(p.key.PublicBase64()), Priv: p.key.Private}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_matrix/key/v2/server" {
			json.NewEncoder(w).Encode(sk.GenerateKeyResponse(p.name, nil))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	p.name = srv.Listener.Addr().String()
	list := allowOnly(allow)
	if p.client, err = transport.NewClient(transport.ClientConfig{ServerName: p.name, Key: p.key, List: list, InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	return p
}

type allowOnly []string

func (a allowOnly) ServerAllowed(s string) error {
	for _, n := range a {
		if n == s {
			return nil
		}
	}
	return errors.New("not allowed")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A hub with federation on serves /version and its keys over TLS (a
// self-signed certificate created in its data directory, which a peer
// can trust as a CA bundle), authenticates requests to the routes other
// packages mount, and refuses an unlisted origin with a code, an audit
// entry at the federation door, and readiness reporting the list.
func TestFederationListener(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) { testFederationListener(t, dialect) })
	}
}

func testFederationListener(t *testing.T, dialect string) {
	ctx := ctxT(t)
	authority, err := trustlist.GenerateAuthorityKey()
	if err != nil {
		t.Fatal(err)
	}
	pubInline, _ := trustlist.EncodePublicKey(authority.Public())
	fedAddr := freeAddr(t)
	peer := newFakePeer(t, fedAddr)
	stranger := newFakePeer(t, fedAddr)

	dir := t.TempDir()
	signed, err := trustlist.Sign(trustlist.List{Expires: time.Now().Add(24 * time.Hour), Servers: []trustlist.Server{
		{Name: peer.name, Operator: "peer-op", Status: trustlist.Active, Users: trustlist.ServerVouched},
	}}, authority, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	listFile := filepath.Join(dir, "list.jws")
	if err := os.WriteFile(listFile, []byte(signed), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := config.Defaults()
	cfg.ServerName = fedAddr
	cfg.DataDir = filepath.Join(dir, "data")
	if dialect == "postgres" {
		cfg.Database = pgtest.URL(t)
	}
	cfg.Listen = freeAddr(t)
	cfg.RateLimits = false
	cfg.FederationListen = fedAddr
	cfg.FederationList = listFile
	cfg.FederationAuthorityKey = pubInline
	cfg.FederationInsecureSkipVerify = true
	cfg.Finish()
	if err := cfg.Verify(); err != nil {
		t.Fatal(err)
	}
	h, err := hub.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Operators.Add(ctx, operators.Operator{ID: "peer-op", Name: "Peer", ServerNames: []string{peer.name},
		Contact: "ops@peer.test"}, "test"); err != nil {
		t.Fatal(err)
	}
	// What a federation package does: mount its routes before Serve (the
	// room side's /send is already there).
	h.Fed.Routes = append(h.Fed.Routes, fedctx.Route{Method: http.MethodPut, Pattern: "/_matrix/federation/v1/eimis_test_echo/{txnID}",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			json.NewEncoder(w).Encode(map[string]any{"origin": fedctx.Origin(r.Context()), "bytes": len(body)})
		})})
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(runCtx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		h.Close()
	})

	// Version over TLS, verified against the generated certificate.
	certFile, _, _ := cfg.FederationTLSFiles()
	verified, err := transport.NewClient(transport.ClientConfig{ServerName: peer.name, Key: peer.key,
		List: allowOnly{fedAddr}, CABundle: certFile})
	if err != nil {
		t.Fatal(err)
	}
	hubtest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		v, err := verified.Version(ctx, fedAddr)
		if err != nil {
			return err
		}
		if v.Server.Name != "eimis-hub" {
			return fmt.Errorf("version %+v", v)
		}
		return nil
	})
	keys, err := verified.ServerKeys(ctx, fedAddr)
	if err != nil {
		t.Fatal(err)
	}
	if keys.ServerName != fedAddr || !keys.HasKey(id.KeyID(h.Key.ID)) || keys.VerifySelfSignature() != nil {
		t.Fatalf("keys: %+v", keys)
	}

	// An authenticated request from the listed peer reaches the route.
	var got struct {
		Origin string
		Bytes  int
	}
	if _, _, err := peer.client.MakeFullRequest(ctx, federation.RequestParams{ServerName: fedAddr, Method: http.MethodPut,
		Path: federation.URLPath{"v1", "eimis_test_echo", "txn1"}, Authenticate: true, RequestJSON: map[string]any{"pdus": []any{}},
		ResponseJSON: &got}); err != nil {
		t.Fatal(err)
	}
	if got.Origin != peer.name || got.Bytes == 0 {
		t.Fatalf("route saw %+v", got)
	}

	// An unlisted origin is refused, audited at its door.
	_, _, err = stranger.client.MakeFullRequest(ctx, federation.RequestParams{ServerName: fedAddr, Method: http.MethodPut,
		Path: federation.URLPath{"v1", "send", "txn1"}, Authenticate: true, RequestJSON: map[string]any{"pdus": []any{}}})
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ExtraData["eimis_code"] != string(operators.CodeServerNotListed) {
		t.Fatalf("unlisted origin: %v", err)
	}
	hubtest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, e := range auditEntries(t, h.Store) {
			if e.Door == "federation:"+stranger.name && e.Reason == string(operators.CodeServerNotListed) {
				return nil
			}
		}
		return errors.New("no audit entry at the federation door")
	})

	// Readiness includes the list.
	resp, err := http.Get("http://" + cfg.Listen + "/_eimis/ready")
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]string
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if ready["federation"] != "ok" {
		t.Fatalf("readiness: %v", ready)
	}
	// The room server verifies remote events with the key ring.
	if k, _, err := h.Fed.Keys.KeyFunc()(peer.name, id.KeyID(peer.key.ID), time.Now()); err != nil || k != id.SigningKey(peer.key.PublicBase64()) {
		t.Fatalf("key ring: %v %v", k, err)
	}
	if !strings.HasPrefix(h.Key.ID, "ed25519:") {
		t.Fatal("no signing key")
	}

	// The peer's operator suspended in the registry: its requests are
	// refused at once, whatever the list says.
	if _, err := h.Operators.Suspend(ctx, "peer-op", "security review", "test"); err != nil {
		t.Fatal(err)
	}
	_, _, err = peer.client.MakeFullRequest(ctx, federation.RequestParams{ServerName: fedAddr, Method: http.MethodPut,
		Path: federation.URLPath{"v1", "send", "txn2"}, Authenticate: true, RequestJSON: map[string]any{"pdus": []any{}}})
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ExtraData["eimis_code"] != string(operators.CodeOperatorSuspended) {
		t.Fatalf("suspended operator's server: %v", err)
	}
}
