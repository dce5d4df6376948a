// Command eimis-hub is the EIMIS interoperability hub for health instant
// messaging: a Matrix homeserver core with NATS JetStream routing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/eimis-hub/eimis/internal/audit"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only on EIMIS_PPROF_ADDR
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `eimis-hub — the EIMIS interoperability hub for health instant messaging

Usage:
  eimis-hub serve [flags]                 run the hub (see: eimis-hub serve --help)
  eimis-hub user create --localpart IDNAT --password P [store flags]
                                          an account for a practitioner of the directory
  eimis-hub user create --localpart L --kind organisational|applicative --name N
                        --responsible IDNAT --password P [store flags]
                                          an organisational or applicative account
  eimis-hub user create --localpart L --kind admin --name N --password P [store flags]
                                          an administration account (admin API only)
  eimis-hub sample [store flags]          load the fictional sample directory and accounts (make run)
  eimis-hub keygen [--out FILE]           write a new ed25519 signing key
  eimis-hub directory import [--max-bad-rows N] [store flags] FILE
                                          import an RPPS extract (PS_LibreAcces_Personne_activite)
  eimis-hub directory stats [store flags] show the stored health directory
  eimis-hub directory synth [--count N] [--start S] FILE
                                          write a synthetic extract (fictional RPPS 19…) for load tests
  eimis-hub directory sync [--full] [store flags]
                                          sync from the Annuaire Santé FHIR API (directory_fhir_url)
  eimis-hub operator add|list|suspend|reactivate|revoke …
                                          the operator allow-list (see: eimis-hub operator)
  eimis-hub bridge add|list|revoke …      Bridge Protocol credentials of operators' messengers (see: eimis-hub bridge)
  eimis-hub audit verify|export|purge …   the audit trail (see: eimis-hub audit)
  eimis-hub appservice add|list|remove …  Matrix application services, e.g. mautrix bridges (see: eimis-hub appservice)
  eimis-hub backup --out DIR | restore --in DIR [store flags]
                                          database, event stream, media and keys (see: eimis-hub backup --help)
  eimis-hub signing-key rotate [store flags]
                                          a new signing key, the old one kept as an old verify key
  eimis-hub healthcheck [--url URL]       exit 0 when the hub answers ready (the container's HEALTHCHECK)
  eimis-hub federation authority-keygen|sign …
                                          a trust space authority's key and signed federation list (see: eimis-hub federation)
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
			fmt.Fprint(stderr, userUsage)
			return 2
		}
		err = userCreate(args[2:], stdout, stderr)
	case "sample":
		err = sample(args[1:], stdout, stderr)
	case "keygen":
		err = keygen(args[1:], stdout, stderr)
	case "directory":
		switch {
		case len(args) >= 2 && args[1] == "import":
			err = directoryImport(args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "stats":
			err = directoryStats(args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "sync":
			err = directorySync(args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "synth":
			err = directorySynth(args[2:], stdout, stderr)
		default:
			fmt.Fprint(stderr, directoryUsage)
			return 2
		}
	case "audit":
		err = auditMain(args[1:], stdout, stderr)
	case "operator":
		err = operatorMain(args[1:], stdout, stderr)
	case "bridge":
		err = bridgeMain(args[1:], stdout, stderr)
	case "appservice":
		err = appserviceMain(args[1:], stdout, stderr)
	case "backup":
		err = backupMain(args[1:], stdout, stderr)
	case "restore":
		err = restoreMain(args[1:], stdout, stderr)
	case "signing-key":
		err = signingKeyMain(args[1:], stdout, stderr)
	case "healthcheck":
		err = healthcheck(args[1:], stdout, stderr)
	case "federation":
		err = federationMain(args[1:], stdout, stderr)
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

// openStore parses a command's flags (the settings' included) and opens
// the configured store: what every command working on the database does
// first.
func openStore(fs *flag.FlagSet, args []string, stderr io.Writer) (config.Config, store.Store, error) {
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return cfg, nil, err
	}
	st, err := hub.OpenStore(context.Background(), cfg)
	return cfg, st, err
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

Accounts are for practitioners of the health directory (%d loaded):
  %s user create %s --localpart <idNat> --password 'choose-a-password'

Point Element (or any Matrix client) at %s as a custom homeserver and log
in as @<idNat>:%s. Health: %s/_eimis/ready  Metrics: %s/metrics
`, cfg.PublicBaseURL, cfg.ServerName, cfg.DataDir, kind, nats, h.Dir.Load().Len(), os.Args[0], storeFlags(cfg, fs), cfg.PublicBaseURL, cfg.ServerName, cfg.PublicBaseURL, cfg.PublicBaseURL)
	return h.Serve(ctx, nil)
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

const directoryUsage = `usage: eimis-hub directory import [--max-bad-rows N] [--data-dir DIR | --database URL] FILE
       eimis-hub directory stats [--data-dir DIR | --database URL]
`

func directoryImport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub directory import", flag.ContinueOnError)
	// A real extract has a handful of bad rows at most; hundreds mean a
	// truncated file or a new format, which must not deactivate anyone.
	maxBad := fs.Int("max-bad-rows", 100, "refuse the import once more rows than this are rejected (0: no limit)")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("directory import: exactly one FILE expected, after the flags")
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("directory import: %w", err)
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, res, err := directory.Import(ctx, st, f, directory.ReadOptions{MaxBadRows: *maxBad})
	printImportReport(stdout, path, rep, res)
	e := audit.Entry{Time: time.Now(), Actor: cliActor(), Action: audit.ActionDirectoryImport, Decision: audit.Allow,
		Reason: fmt.Sprintf("rows=%d practitioners=%d bad_rows=%d generation=%d newly_inactive=%d",
			rep.Rows, rep.People, rep.BadRows, res.Stats.Generation, res.Inactivated)}
	if !res.Committed {
		e.Decision = audit.Deny
	}
	trail := audit.New(st, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), "cli")
	if aerr := trail.Record(context.WithoutCancel(ctx), e); aerr != nil {
		fmt.Fprintln(stderr, "warning: audit entry not recorded:", aerr)
	}
	trail.Close()
	return err
}

func printImportReport(w io.Writer, path string, rep directory.Report, res directory.ImportResult) {
	fmt.Fprintf(w, "%s: %d rows, %d practitioners, encoding %s\n", path, rep.Rows, rep.People, rep.Encoding)
	if rep.Filtered > 0 {
		fmt.Fprintf(w, "filtered out: %d rows\n", rep.Filtered)
	}
	if rep.BadRows > 0 {
		more := ""
		if rep.BadRows > len(rep.Examples) {
			more = fmt.Sprintf(" (first %d shown)", len(rep.Examples))
		}
		fmt.Fprintf(w, "bad rows: %d%s\n", rep.BadRows, more)
		for _, e := range rep.Examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	if !res.Committed {
		fmt.Fprintln(w, "import refused: the previous directory is unchanged")
		return
	}
	fmt.Fprintf(w, "imported generation %d in %s: %d active, %d inactive, %d newly inactive\n",
		res.Stats.Generation, res.Duration.Round(time.Millisecond), res.Stats.Active, res.Stats.Inactive, res.Inactivated)
}

func directoryStats(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub directory stats", flag.ContinueOnError)
	_, st, err := openStore(fs, args, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	s, err := st.DirectoryStats(ctx)
	if err != nil {
		return err
	}
	if s.Generation == 0 {
		fmt.Fprintln(stdout, "no directory imported yet")
		return nil
	}
	fmt.Fprintf(stdout, "generation %d, imported %s: %d active, %d inactive\n",
		s.Generation, s.ImportedAt.UTC().Format(time.RFC3339), s.Active, s.Inactive)
	return nil
}
