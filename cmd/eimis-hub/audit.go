package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub"
)

const auditUsage = `usage: eimis-hub audit COMMAND [flags]

The audit trail: who did what and when, in which room, to whom, allowed or
refused and why. Metadata only, never message content. Entries are hash
chained, so a changed or deleted entry shows.

  eimis-hub audit verify [--expect SEQ:HASH …] [store flags]
      check every hash and link; prints the head (SEQ:HASH). Keep heads
      outside the hub and pass them back with --expect: that also catches
      a deleted tail, which the database alone cannot prove
  eimis-hub audit export --since T [--until T] [--out FILE] [store flags]
      write the entries with since <= time < until as JSON lines, to
      stdout or to FILE (created, never overwritten)
  eimis-hub audit purge --before T [store flags]
      delete the entries older than T; the rest stays verifiable, and the
      purge itself is recorded (serve purges by itself after
      audit_retention)

T is RFC 3339 (2026-01-31T14:00:00Z) or a date (2026-01-31, midnight UTC).
Store flags: --data-dir DIR | --database URL (or EIMIS_DATA_DIR,
EIMIS_DATABASE, or --config FILE). Exit status: 0 when the command did what
it says (verify: the chain holds), non-zero otherwise.
`

// auditMain runs `eimis-hub audit …` (args after "audit").
func auditMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return errors.New("audit: a command is required")
	}
	switch cmd := args[0]; cmd {
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "export":
		return auditExport(args[1:], stdout, stderr)
	case "purge":
		return auditPurge(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, auditUsage)
		return nil
	default:
		fmt.Fprint(stderr, auditUsage)
		return fmt.Errorf("audit: unknown command %q", cmd)
	}
}

func auditFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("eimis-hub audit "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsage, "\nFlags of ", name, " (with every hub setting, of which only the store's matter here):\n")
		fs.PrintDefaults()
	}
	return fs
}

// auditConfig loads the configuration (the store flags are what matter);
// the audit commands take no positional arguments.
func auditConfig(fs *flag.FlagSet, args []string, stderr io.Writer) (config.Config, error) {
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%s: unexpected argument %q (everything is given with flags)", fs.Name(), fs.Arg(0))
	}
	return cfg, nil
}

// checkpointList is the repeatable --expect SEQ:HASH flag.
type checkpointList []audit.Link

func (l *checkpointList) String() string {
	parts := make([]string, len(*l))
	for i, c := range *l {
		parts[i] = fmt.Sprintf("%d:%x", c.Seq, c.Hash)
	}
	return strings.Join(parts, ",")
}

func (l *checkpointList) Set(v string) error {
	s, h, ok := strings.Cut(v, ":")
	seq, err := strconv.ParseInt(s, 10, 64)
	if !ok || err != nil || seq < 0 {
		return fmt.Errorf("want SEQ:HASH, as verify prints it, not %q", v)
	}
	hash, err := hex.DecodeString(h)
	if err != nil || len(hash) != 32 {
		return fmt.Errorf("want SEQ:HASH with a 64-digit hex hash, not %q", v)
	}
	*l = append(*l, audit.Link{Seq: seq, Hash: hash})
	return nil
}

func auditVerify(args []string, stdout, stderr io.Writer) error {
	fs := auditFlags("verify")
	var expect checkpointList
	fs.Var(&expect, "expect", "a head printed by an earlier verify (SEQ:HASH) that must still be in the chain; repeatable")
	cfg, err := auditConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := audit.Verify(ctx, st, expect...)
	var brk *audit.Break
	if errors.As(err, &brk) {
		if res.Checked > 0 {
			fmt.Fprintf(stdout, "checked %d entries (seq %d..%d) before the break\n", res.Checked, res.FirstSeq, res.LastSeq)
		}
		return fmt.Errorf("audit trail BROKEN: %w", err)
	}
	if err != nil {
		return err
	}
	if res.Checked == 0 {
		fmt.Fprintln(stdout, "audit trail OK: 0 entries")
	} else {
		fmt.Fprintf(stdout, "audit trail OK: %d entries (seq %d..%d)\n", res.Checked, res.FirstSeq, res.LastSeq)
	}
	if res.Anchor.Seq > 0 {
		fmt.Fprintf(stdout, "purged through seq %d\n", res.Anchor.Seq)
	}
	if res.Unchecked > 0 {
		fmt.Fprintf(stdout, "%d --expect checkpoints not checked: their entries were purged\n", res.Unchecked)
	}
	fmt.Fprintf(stdout, "head: %d:%x\n", res.Head.Seq, res.Head.Hash)
	return nil
}

// parseAuditTime reads RFC 3339 or a bare date (midnight UTC).
func parseAuditTime(flagName, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--%s: want RFC 3339 (2026-01-31T14:00:00Z) or a date (2026-01-31), not %q", flagName, v)
}

func auditExport(args []string, stdout, stderr io.Writer) error {
	fs := auditFlags("export")
	sinceS := fs.String("since", "", "first time to export, inclusive (required; RFC 3339 or YYYY-MM-DD)")
	untilS := fs.String("until", "", "time to stop at, exclusive (default: no end)")
	out := fs.String("out", "", "file to create (refuses to overwrite); empty writes to stdout")
	cfg, err := auditConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if *sinceS == "" {
		return errors.New("audit export: --since is required")
	}
	since, err := parseAuditTime("since", *sinceS)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	var until time.Time
	if *untilS != "" {
		if until, err = parseAuditTime("until", *untilS); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		if !until.After(since) {
			return errors.New("audit export: --until must be after --since")
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	w, report := stdout, stderr
	var f *os.File
	if *out != "" {
		// 0600: who talked to whom and when is sensitive, even without content.
		f, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		w, report = f, stdout
	}
	n, err := audit.Export(ctx, st, since, until, w)
	if f != nil {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("audit export: %w", cerr)
		}
		if err != nil {
			// Half an export looks like a complete one; do not leave it.
			_ = os.Remove(*out)
		}
	}
	if err != nil {
		return err
	}
	where := "stdout"
	if *out != "" {
		where = *out
	}
	fmt.Fprintf(report, "exported %d entries to %s\n", n, where)
	return nil
}

func auditPurge(args []string, stdout, stderr io.Writer) error {
	fs := auditFlags("purge")
	beforeS := fs.String("before", "", "delete entries older than this (required; RFC 3339 or YYYY-MM-DD)")
	cfg, err := auditConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if *beforeS == "" {
		return errors.New("audit purge: --before is required")
	}
	before, err := parseAuditTime("before", *beforeS)
	if err != nil {
		return fmt.Errorf("audit purge: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := audit.Purge(ctx, st, before, cliActor())
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintf(stdout, "nothing to purge: no entry is older than %s\n", before.UTC().Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(stdout, "purged %d entries older than %s; the rest of the chain stays verifiable\n", n, before.UTC().Format(time.RFC3339))
	return nil
}
