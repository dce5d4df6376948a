package bus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/bus/natstest"
)

// TestSecuredExternalNATS connects to a separately started nats-server that
// requires TLS with a client certificate and a known user, with each kind
// of credential, and checks that wrong settings fail with a message naming
// the setting to fix.
func TestSecuredExternalNATS(t *testing.T) {
	s := natstest.StartSecured(t)
	tlsOK := Security{CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile}
	with := func(f func(*Security)) Security { c := tlsOK; f(&c); return c }
	for _, tc := range []struct {
		name    string
		sec     Security
		wantErr string // "" means the connection must work
	}{
		{"user and password", with(func(c *Security) { c.User, c.Password = s.User, s.Password }), ""},
		{"nkey seed", with(func(c *Security) { c.NKeySeedFile = s.NKeySeedFile }), ""},
		{"wrong password", with(func(c *Security) { c.User, c.Password = s.User, "wrong" }), "refused our credentials"},
		{"no credentials", tlsOK, "refused our credentials"},
		{"unrelated CA", with(func(c *Security) { c.User, c.Password, c.CAFile = s.User, s.Password, s.OtherCAFile }), "certificate"},
		{"no client certificate", Security{User: s.User, Password: s.Password, CAFile: s.CAFile}, "connect to nats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b, err := Start(ctx, Config{URL: s.URL, Name: "sec-test", Security: tc.sec}, testLogger(t))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				defer b.Close()
				if err := b.PublishEvent(ctx, EventMsg{RoomID: "!r:sec.test", EventID: "$" + strings.ReplaceAll(tc.name, " ", "_"), Pos: 1}); err != nil {
					t.Fatalf("publish over the secured connection: %v", err)
				}
				return
			}
			if err == nil {
				b.Close()
				t.Fatalf("Start succeeded, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), s.Password) {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

// TestEmbeddedListensNowhere checks the embedded server opens no TCP port
// by default, and a loopback one only when asked.
func TestEmbeddedListensNowhere(t *testing.T) {
	b := startEmbeddedBus(t, nil)
	if addr := b.srv.Addr(); addr != nil {
		t.Fatalf("embedded server listens on %v by default", addr)
	}
	b2 := startEmbeddedBus(t, func(c *Config) { c.EmbeddedListen = "127.0.0.1:0" })
	addr := b2.srv.Addr()
	if addr == nil || !strings.HasPrefix(addr.String(), "127.0.0.1:") {
		t.Fatalf("embedded server with EmbeddedListen listens on %v, want 127.0.0.1:<port>", addr)
	}
}
