package bus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// checkFor polls fn every interval until it returns nil, failing the test
// with fn's last error once total has elapsed. Tests use it instead of
// sleeping so they are as fast as the machine allows and never flaky on a
// slow one.
func checkFor(t testing.TB, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", total, err)
		}
		time.Sleep(every)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startEmbeddedBus(t testing.TB, mod func(*Config)) *Bus {
	t.Helper()
	cfg := DefaultConfig(t.TempDir())
	cfg.Name = "test"
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// startNATS runs a standalone JetStream server on a real loopback TCP
// listener. port 0 picks a free port.
func startNATS(t testing.TB, storeDir string, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "ext",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("nats server not ready")
	}
	return s
}

func serverPort(t testing.TB, s *server.Server) int {
	t.Helper()
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("server address %v is not TCP", s.Addr())
	}
	return addr.Port
}

// watcher collects what WatchEvents delivers, skipping probe events.
type watcher struct {
	mu     sync.Mutex
	events []EventMsg
	probed atomic.Bool
}

const probeRoom = "!probe:test.invalid"

func (w *watcher) fn(m EventMsg) {
	if m.RoomID == probeRoom {
		w.probed.Store(true)
		return
	}
	w.mu.Lock()
	w.events = append(w.events, m)
	w.mu.Unlock()
}

func (w *watcher) snapshot() []EventMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]EventMsg(nil), w.events...)
}

// startWatch runs WatchEvents in the background and returns once it has
// demonstrably seen a freshly published event, i.e. its consumer exists.
func startWatch(t testing.TB, ctx context.Context, b *Bus) (*watcher, <-chan error) {
	t.Helper()
	w := &watcher{}
	done := make(chan error, 1)
	go func() { done <- b.WatchEvents(ctx, w.fn) }()
	var n atomic.Int64
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		select {
		case err := <-done:
			t.Fatalf("WatchEvents returned early: %v", err)
		default:
		}
		if w.probed.Load() {
			return nil
		}
		id := fmt.Sprintf("$probe%d", n.Add(1))
		if err := b.PublishEvent(ctx, EventMsg{RoomID: probeRoom, EventID: id, Type: "m.probe"}); err != nil {
			return err
		}
		return fmt.Errorf("probe not seen yet")
	})
	return w, done
}
