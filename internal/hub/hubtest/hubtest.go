// Package hubtest starts real hub instances for tests (real store, real
// NATS, real HTTP) and gives real Matrix clients (mautrix-go) for them.
package hubtest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

// Options for Start. The zero value is an embedded hub on SQLite.
type Options struct {
	// Dialect is "sqlite" (default) or "postgres" (a fresh throwaway
	// database unless DatabaseURL is set).
	Dialect     string
	DatabaseURL string
	NATSURL     string
	DataDir     string
	// SigningKeyPath lets two instances share one server key.
	SigningKeyPath string
	ServerName     string
	SharedSecret   string
	RoomVersion    string
	// Directory is imported before the hub starts, unless the database
	// already has one; nil means People(). NoDirectory starts without.
	Directory   []directory.Practitioner
	NoDirectory bool
	// Configure, when set, adjusts the config before the hub opens.
	Configure func(*config.Config)
	// Log, when set, receives the hub's log (else it is discarded, or
	// written to stderr with EIMIS_TEST_LOG set).
	Log *slog.Logger
}

// Hub is a running test instance.
type Hub struct {
	*hub.Hub
	URL string
}

// Dialects are the store dialects every integration test runs against.
var Dialects = []string{"sqlite", "postgres"}

// Start runs a hub until the test ends.
func Start(t testing.TB, o Options) *Hub {
	t.Helper()
	cfg := config.Defaults()
	cfg.ServerName = "hub.test"
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}
	cfg.DataDir = o.DataDir
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	switch o.Dialect {
	case "", "sqlite":
		cfg.Database = ""
	case "postgres":
		cfg.Database = o.DatabaseURL
		if cfg.Database == "" {
			cfg.Database = pgtest.URL(t)
		}
	default:
		t.Fatalf("unknown dialect %q", o.Dialect)
	}
	cfg.NATS = o.NATSURL
	cfg.SigningKeyPath = o.SigningKeyPath
	cfg.RegistrationSharedSecret = o.SharedSecret
	if o.RoomVersion != "" {
		cfg.RoomVersion = o.RoomVersion
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	cfg.PublicBaseURL = ""
	// Tests drive many clients from one address at machine speed: rate
	// limits are off unless a test turns them on (Configure).
	cfg.RateLimits = false
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	cfg.Finish()
	if err := cfg.Verify(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if !o.NoDirectory {
		people := o.Directory
		if people == nil {
			people = People()
		}
		importIfEmpty(t, cfg, people)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("EIMIS_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.Log != nil {
		log = o.Log
	}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := hub.Open(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("open hub: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		h.Close()
	})
	return &Hub{Hub: h, URL: "http://" + cfg.Listen}
}

// SigningKeyFile returns a path for a key shared by several instances.
func SigningKeyFile(t testing.TB) string {
	return filepath.Join(t.TempDir(), "signing.key")
}

// CreateUser makes an account directly in the store (as `eimis-hub user
// create` does). A test name ("alice") is the practitioner of that name.
func (h *Hub) CreateUser(t testing.TB, name, password string) {
	t.Helper()
	localpart := Localpart(name)
	if _, err := h.IDs.CreateAccount(context.Background(), localpart, password, false); err != nil {
		t.Fatalf("create user %s: %v", localpart, err)
	}
}

// Client logs in through the Client-Server API with a mautrix client.
func (h *Hub) Client(t testing.TB, name, password string) *mautrix.Client {
	t.Helper()
	localpart := Localpart(name)
	cli, err := mautrix.NewClient(h.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	cli.Client = &http.Client{Timeout: 60 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = cli.Login(ctx, &mautrix.ReqLogin{
		Type:             mautrix.AuthTypePassword,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:         password,
		StoreCredentials: true,
	})
	if err != nil {
		t.Fatalf("login %s: %v", localpart, err)
	}
	return cli
}

// NewUser creates an account and returns a logged-in client.
func (h *Hub) NewUser(t testing.TB, localpart string) *mautrix.Client {
	t.Helper()
	h.CreateUser(t, localpart, "pw-"+localpart)
	return h.Client(t, localpart, "pw-"+localpart)
}

// ClientFor returns a client for another instance with the same session.
func ClientFor(t testing.TB, url string, from *mautrix.Client) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(url, from.UserID, from.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	cli.DeviceID = from.DeviceID
	cli.Client = &http.Client{Timeout: 60 * time.Second}
	return cli
}

// CheckFor polls fn until it returns nil or total elapses, then fails
// with fn's last error. Tests use it instead of sleeps.
func CheckFor(t testing.TB, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(every)
	}
	t.Fatalf("condition not met after %v: %v", total, err)
}
