package hub_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/bus/natstest"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// TestHubOnSecuredNATS runs a hub against a separately started nats-server
// requiring TLS with a client certificate and user/password, configured
// through the settings an operator writes.
func TestHubOnSecuredNATS(t *testing.T) {
	s := natstest.StartSecured(t)
	h := hubtest.Start(t, hubtest.Options{NATSURL: s.URL, Configure: func(c *config.Config) {
		c.NATSUser, c.NATSPassword = s.User, s.Password
		c.NATSCAFile, c.NATSCertFile, c.NATSKeyFile = s.CAFile, s.CertFile, s.KeyFile
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Bus.Ping(ctx); err != nil {
		t.Fatalf("bus not ready over the secured connection: %v", err)
	}
	alice := h.NewUser(t, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "hello over TLS"); err != nil {
		t.Fatalf("send: %v", err)
	}
}
