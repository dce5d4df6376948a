package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eimis-hub/eimis/internal/backup"
	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/signingkey"
)

const backupUsage = `usage: eimis-hub backup --out DIR [--no-stream] [--pg-bin DIR] [settings flags]
       eimis-hub restore --in DIR [--force] [--no-stream] [--pg-bin DIR] [settings flags]

backup writes the database (SQLite: online VACUUM INTO; PostgreSQL: pg_dump),
a JetStream snapshot of the event stream, the media files and the signing
keys into DIR. With the embedded NATS, stop the hub first or pass --no-stream
(the database alone restores every message). restore needs every instance
stopped. See docs/operations.md#backups-and-restores.
`

func backupMain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub backup", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), backupUsage) }
	out := fs.String("out", "", "directory to write, new or empty (required)")
	noStream := fs.Bool("no-stream", false, "leave the NATS event stream out")
	pgBin := fs.String("pg-bin", "", "directory of pg_dump (default: PATH, then /usr/lib/postgresql/*/bin)")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if *out == "" {
		return errors.New("backup: --out DIR is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var b *bus.Bus
	if !*noStream {
		if b, err = openBus(ctx, cfg); err != nil {
			return fmt.Errorf("backup: %w (is the hub running on the embedded NATS? stop it or pass --no-stream)", err)
		}
		defer b.Close()
	}
	m, err := backup.Run(ctx, cfg, streamer(b), *out, backup.Options{PGBin: *pgBin})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup of %s written to %s: %s database, %d stream messages, %d media files\n",
		m.ServerName, *out, m.Database, m.StreamMessages, m.MediaFiles)
	return nil
}

func restoreMain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub restore", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), backupUsage) }
	in := fs.String("in", "", "backup directory written by eimis-hub backup (required)")
	force := fs.Bool("force", false, "replace an existing SQLite file, signing key and event stream")
	noStream := fs.Bool("no-stream", false, "leave the NATS event stream as it is")
	pgBin := fs.String("pg-bin", "", "directory of pg_restore (default: PATH, then /usr/lib/postgresql/*/bin)")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if *in == "" {
		return errors.New("restore: --in DIR is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var b *bus.Bus
	if !*noStream {
		if b, err = openBus(ctx, cfg); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		defer b.Close()
	}
	m, err := backup.Restore(ctx, cfg, streamer(b), *in, backup.Options{PGBin: *pgBin, Force: *force})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored the backup of %s taken %s: %s database, %d stream messages, %d media files\n",
		m.ServerName, m.Created.Format(time.RFC3339), m.Database, m.StreamMessages, m.MediaFiles)
	return nil
}

// streamer keeps a nil *bus.Bus a nil interface.
func streamer(b *bus.Bus) backup.Streamer {
	if b == nil {
		return nil
	}
	return b
}

// openBus connects to the configured NATS as serve does (the embedded
// server on the data directory, or the external cluster with its
// credentials).
func openBus(ctx context.Context, cfg config.Config) (*bus.Bus, error) {
	bcfg := bus.DefaultConfig(cfg.NATSStoreDir())
	bcfg.URL = cfg.NATS
	bcfg.MaxAge = cfg.NATSStreamMaxAge
	bcfg.Replicas = max(cfg.NATSReplicas, 1)
	bcfg.Name = "eimis-backup-" + cfg.ServerName
	bcfg.Security, _ = hub.NATSSecurity(cfg)
	return bus.Start(ctx, bcfg, slog.New(slog.DiscardHandler))
}

const signingKeyUsage = `usage: eimis-hub signing-key rotate [settings flags]

Replaces the signing key at signing_key_path with a new one and keeps the
old public key in <signing_key_path>.old, published as old_verify_keys so
other servers still verify what it signed. Restart every instance after.
`

func signingKeyMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		fmt.Fprint(stderr, signingKeyUsage)
		return errors.New("signing-key: expected the rotate subcommand")
	}
	fs := flag.NewFlagSet("eimis-hub signing-key rotate", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), signingKeyUsage) }
	cfg, err := loadConfig(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	k, old, err := signingkey.Rotate(cfg.SigningKeyPath, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signing key %s replaced by %s; %s kept in %s as an old verify key.\nRestart every instance so they all sign with %s.\n",
		old.ID, k.ID, old.ID, signingkey.OldKeysPath(cfg.SigningKeyPath), k.ID)
	return nil
}
