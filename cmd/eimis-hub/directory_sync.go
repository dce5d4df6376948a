package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eimis-hub/eimis/internal/directory/fhir"
	"github.com/eimis-hub/eimis/internal/hub"
)

// syncMaxRetries lets a run by hand ride out the gateway's rate limiting
// (429) and brief 5xx instead of failing on the first one; the client's
// backoff and Retry-After keep the retries polite.
const syncMaxRetries = 3

// directorySync runs `eimis-hub directory sync [--full] [store flags]`: one
// sync from the Annuaire Santé FHIR API into the stored directory, the same
// one serve runs periodically, for a first load or after an outage.
func directorySync(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub directory sync", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: eimis-hub directory sync [--full] [--data-dir DIR | --database URL] [--directory-fhir-url URL]

Syncs the stored health directory from the Annuaire Santé FHIR API. The first
sync, or one with --full, reads every practitioner into a new directory
generation; later ones fetch only what changed since the previous sync. A
failed sync leaves the stored directory as it was.

Flags:
`)
		fs.PrintDefaults()
	}
	full := fs.Bool("full", false, "read the whole directory, marking practitioners the API no longer lists inactive")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("directory sync: unexpected argument %q", fs.Arg(0))
	}
	// Checked here rather than left to fhir.New, so that the message names
	// the settings an operator can actually set.
	if cfg.DirectoryFHIRURL == "" {
		return errors.New("directory sync: directory_fhir_url is not set (--directory-fhir-url, EIMIS_DIRECTORY_FHIR_URL or the config file)")
	}
	if cfg.DirectoryFHIRAPIKey == "" {
		return errors.New("directory sync: directory_fhir_api_key is not set (EIMIS_DIRECTORY_FHIR_API_KEY, the config file or --directory-fhir-api-key)")
	}
	c, err := fhir.New(fhir.Config{BaseURL: cfg.DirectoryFHIRURL, APIKey: cfg.DirectoryFHIRAPIKey, MaxRetries: syncMaxRetries})
	if err != nil {
		return fmt.Errorf("directory sync: %w", err)
	}
	// Interrupting stops the sync between requests; the directory is then
	// left as it was, like any failed sync.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := fhir.Sync(ctx, st, c, *full)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, syncSummary(res))
	return nil
}

// syncSummary is one line, so that a cron job's log stays greppable.
func syncSummary(res fhir.SyncResult) string {
	kind := "full sync"
	if !res.Full {
		kind = "incremental sync (changes since " + res.Since.UTC().Format(time.RFC3339) + ")"
	}
	skipped := ""
	if res.Stats.Skipped > 0 {
		skipped = fmt.Sprintf(", %d skipped without a valid idNat", res.Stats.Skipped)
	}
	return fmt.Sprintf("%s: %d practitioners, %d inactivated%s, %d pages, %d retries, in %s",
		kind, res.Practitioners, res.Inactivated, skipped, res.Stats.Pages, res.Stats.Retries, res.Duration.Round(time.Millisecond))
}
