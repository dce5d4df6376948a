// Package bus is the hub's event bus on NATS JetStream.
//
// Accepted Matrix events are written to the EIMIS_EVENTS stream by the
// outbox relay (PublishEvent/PublishEvents, de-duplicated by event ID so a
// relay that crashes between publish and marking the outbox row can simply
// publish again). Every hub instance watches the stream with a throw-away
// ordered consumer (WatchEvents) to wake its /sync long-polls, and egress
// components (bridges, appservices, audit) use durable consumers (Consume)
// so they resume where they stopped.
//
// The bus either runs an embedded nats-server in-process (single-node
// deployments, tests) or connects to an external NATS cluster.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrClosed is returned by long-running calls when the bus connection has
// been closed underneath them.
var ErrClosed = errors.New("bus: closed")

const (
	defaultMaxAge     = 7 * 24 * time.Hour
	duplicateWindow   = 2 * time.Minute
	defaultName       = "eimis-hub"
	drainTimeout      = 10 * time.Second
	asyncMaxPending   = 4096
	asyncPublishAckTO = 30 * time.Second
)

// Config configures the bus. The zero value is not usable: embedded mode
// needs StoreDir. Use DefaultConfig as a starting point.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated URLs are
	// accepted). Empty runs an embedded server in-process.
	URL string
	// StoreDir is the embedded server's JetStream file store directory.
	StoreDir string
	// Replicas of the event stream; forced to 1 in embedded mode.
	Replicas int
	// MaxAge bounds how long events stay in the stream (default 7 days).
	// The database stays the source of truth; the stream only needs to
	// cover consumer outages.
	MaxAge time.Duration
	// SyncAlways makes the embedded server fsync every JetStream write
	// before acknowledging it, so an acked publish survives power loss.
	// The config loader should default it to true (see DefaultConfig); a
	// plain bool cannot express that default by itself.
	SyncAlways bool
	// SyncInterval, when SyncAlways is false, is how often the embedded
	// server fsyncs JetStream data (the server's own default is 2 minutes).
	SyncInterval time.Duration
	// Name identifies this instance in NATS (connection name, embedded
	// server name).
	Name string
	// Security is the external NATS's credentials and TLS (security.go).
	Security Security
	// EmbeddedListen, when set, opens a TCP listener (loopback, by the
	// config's rule) on the embedded server; empty keeps it in-process.
	EmbeddedListen string
	// OnPublish, if set, observes every event publish with the time until
	// the JetStream ack arrived (or failed). Telemetry wires it.
	OnPublish func(d time.Duration, err error)
}

// DefaultConfig returns the recommended settings for an embedded bus
// storing its data in storeDir.
func DefaultConfig(storeDir string) Config {
	return Config{
		StoreDir:   storeDir,
		Replicas:   1,
		MaxAge:     defaultMaxAge,
		SyncAlways: true,
		Name:       defaultName,
	}
}

// Bus is a connection to NATS JetStream with the event stream set up. It is
// safe for concurrent use.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	srv    *server.Server // nil in external mode

	closedCh  chan struct{} // closed by the NATS closed handler
	closeOnce sync.Once
}

// Start connects to NATS (or starts the embedded server) and creates or
// updates the event stream. ctx bounds the start-up only.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "bus")
	if cfg.Name == "" {
		cfg.Name = defaultName
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = defaultMaxAge
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}

	b := &Bus{cfg: cfg, log: log, closedCh: make(chan struct{})}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.DrainTimeout(drainTimeout),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closedCh) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", "subject", subj, "err", err)
		}),
	}

	if cfg.URL == "" {
		b.cfg.Replicas = 1
		srv, err := startEmbedded(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		opts = append(opts, nats.InProcessServer(srv))
	} else {
		sec, err := cfg.Security.options()
		if err != nil {
			return nil, err
		}
		opts = append(opts, sec...)
		opts = append(opts,
			// The hub is useless without the bus, so it never gives up;
			// readiness (Ping) reports the outage instead.
			nats.MaxReconnects(-1),
			nats.ReconnectWait(time.Second),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err == nil {
					// nil means a deliberate close (Close/Drain).
					log.Debug("nats disconnected")
					return
				}
				log.Warn("nats disconnected", "err", err)
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			}),
		)
	}

	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		b.shutdownServer()
		return nil, explainConnect(err)
	}
	b.nc = nc

	b.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(asyncMaxPending),
		// Without a timeout an async publish whose ack is lost (server
		// restart) would never resolve and PublishEvents would hang until
		// its context ends.
		jetstream.WithPublishAsyncTimeout(asyncPublishAckTO),
	)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream context: %w", err)
	}

	dup := duplicateWindow
	if dup > cfg.MaxAge {
		// The server rejects a de-duplication window longer than MaxAge.
		dup = cfg.MaxAge
	}
	b.stream, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "Accepted Matrix events (EIMIS hub)",
		Subjects:    []string{EventsWildcard},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		Duplicates:  dup,
		Replicas:    b.cfg.Replicas,
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: create stream %s: %w", StreamEvents, err)
	}

	mode := "external"
	if b.srv != nil {
		mode = "embedded"
	}
	log.Info("bus started", "mode", mode, "stream", StreamEvents,
		"replicas", b.cfg.Replicas, "max_age", cfg.MaxAge)
	return b, nil
}

// startEmbedded runs a JetStream-enabled nats-server inside this process.
// It does not listen on TCP unless EmbeddedListen asks for a loopback
// port; the hub reaches it through an in-process pipe, so single-node
// deployments need no port and no credentials.
func startEmbedded(ctx context.Context, cfg Config, log *slog.Logger) (*server.Server, error) {
	if cfg.StoreDir == "" {
		// The server would fall back to a temp dir and silently lose the
		// stream on reboot.
		return nil, errors.New("bus: embedded mode needs a StoreDir")
	}
	sopts := &server.Options{
		ServerName:   cfg.Name,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
		DontListen:   true,
		NoSigs:       true,
	}
	if cfg.EmbeddedListen != "" {
		host, port, err := splitListen(cfg.EmbeddedListen)
		if err != nil {
			return nil, err
		}
		sopts.DontListen, sopts.Host, sopts.Port = false, host, port
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats-server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{log.With("nats", "embedded")}, false, false, false)
	srv.Start()
	// ReadyForConnections takes a duration, not a context; poll in short
	// steps so a cancelled start-up does not wait for a slow store recovery.
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		if err := ctx.Err(); err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("bus: embedded nats-server not ready: %w", err)
		}
	}
	return srv, nil
}

// Ping reports whether the bus is usable: connected, and JetStream
// answering API calls. It is meant for readiness probes.
func (b *Bus) Ping(ctx context.Context) error {
	if st := b.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("bus: nats connection is %s", st)
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("bus: jetstream account info: %w", err)
	}
	return nil
}

// Close drains the connection (in-flight handlers finish, pending acks and
// publishes are flushed), then stops the embedded server and waits for it.
// It is safe to call more than once.
func (b *Bus) Close() {
	b.closeOnce.Do(func() {
		if b.nc != nil {
			if err := b.nc.Drain(); err != nil {
				b.nc.Close()
			}
			select {
			case <-b.closedCh:
			case <-time.After(drainTimeout + time.Second):
				b.log.Warn("nats drain did not finish, closing")
				b.nc.Close()
			}
		}
		b.shutdownServer()
	})
}

func (b *Bus) shutdownServer() {
	if b.srv == nil {
		return
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

// serverLogger forwards the embedded server's log lines to slog. Notices go
// to debug because the server prints a multi-line banner at start-up that
// would drown the hub's own logs.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  {}
