// Command eimis-hub is the EIMIS interoperability hub for health instant
// messaging: a Matrix homeserver core with NATS JetStream routing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // served only on EIMIS_PPROF_ADDR
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `eimis-hub — the EIMIS interoperability hub for health instant messaging

Usage:
  eimis-hub serve [flags]                 run the hub (see: eimis-hub serve --help)
  eimis-hub user create --localpart L --password P [--admin] [store flags]
  eimis-hub keygen [--out FILE]           write a new ed25519 signing key
  eimis-hub version

Every setting can come from a YAML file (--config, EIMIS_CONFIG), EIMIS_*
environment variables or flags; flags win over the environment, which wins
over the file.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "user":
		if len(args) < 2 || args[1] != "create" {
			fmt.Fprint(stderr, "usage: eimis-hub user create --localpart L --password P [--admin] [--data-dir DIR | --database URL]\n")
			return 2
		}
		err = userCreate(args[2:], stdout, stderr)
	case "keygen":
		err = keygen(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "eimis-hub", buildVersion())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "eimis-hub:", err)
		return 1
	}
	return 0
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return "dev-" + s.Value
			}
		}
	}
	return version
}

func loadConfig(fs *flag.FlagSet, args []string, stderr io.Writer) (config.Config, error) {
	fs.SetOutput(stderr)
	return config.LoadWithFlags(args, fs, os.Environ())
}

func serve(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub serve", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: eimis-hub serve [flags]\n\nRuns the hub. With no flags: embedded NATS and SQLite under ./data, listening on 127.0.0.1:8008.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	log, err := telemetry.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if addr := os.Getenv("EIMIS_PPROF_ADDR"); addr != "" {
		// Opt-in profiling on its own listener, never on the public one.
		go func() {
			log.Info("pprof listening", "addr", addr)
			if err := http.ListenAndServe(addr, nil); err != nil {
				log.Error("pprof", "err", err)
			}
		}()
	}
	h, err := hub.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer h.Close()
	kind, _ := cfg.DatabaseKind()
	nats := "embedded"
	if cfg.NATS != "" {
		nats = "external"
	}
	log.Info("hub started", "server_name", cfg.ServerName, "listen", cfg.Listen, "database", kind, "nats", nats, "version", buildVersion())
	fmt.Fprintf(stdout, `
EIMIS hub is running.
  Homeserver URL : %s
  Server name    : %s
  Data directory : %s (database: %s, NATS: %s)

Create an account (in another terminal):
  %s user create --data-dir %s --localpart alice --password 'choose-a-password'

Then point Element (or any Matrix client) at %s as a custom homeserver
and log in as @alice:%s. Health: %s/_eimis/health  Metrics: %s/metrics
`, cfg.PublicBaseURL, cfg.ServerName, cfg.DataDir, kind, nats, os.Args[0], cfg.DataDir, cfg.PublicBaseURL, cfg.ServerName, cfg.PublicBaseURL, cfg.PublicBaseURL)
	return h.Serve(ctx, nil)
}

func userCreate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub user create", flag.ContinueOnError)
	localpart := fs.String("localpart", "", "localpart of the new user (@localpart:server)")
	password := fs.String("password", "", "password (prefer EIMIS_USER_PASSWORD: flags show in ps)")
	admin := fs.Bool("admin", false, "make the user a server admin")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if *password == "" {
		*password = os.Getenv("EIMIS_USER_PASSWORD")
	}
	if *localpart == "" || *password == "" {
		return errors.New("--localpart and --password (or EIMIS_USER_PASSWORD) are required")
	}
	ctx := context.Background()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	ids := identity.New(st, cfg.ServerName, 0)
	uid, err := ids.CreateAccount(ctx, *localpart, *password, *admin)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s\n", uid)
	return nil
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "file to write (refuses to overwrite); empty prints to stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, err := signingkey.Generate()
	if err != nil {
		return err
	}
	if *out == "" {
		b, err := signingkey.Encode(k)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	if err := signingkey.Write(*out, k); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s)\n", *out, k.ID)
	return nil
}
