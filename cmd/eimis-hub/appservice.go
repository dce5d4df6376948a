package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eimis-hub/eimis/bridges/appservice"
	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/telemetry"
)

const appserviceUsage = `usage: eimis-hub appservice COMMAND [flags]

Manage Matrix application services (bridges such as mautrix bridges).

  eimis-hub appservice add --responsible IDNAT [--name NAME] [store flags] FILE
      register the appservice described by a registration file (YAML);
      its own accounts (sender, bot) become applicative accounts under the
      practitioner --responsible, named --name
  eimis-hub appservice list [store flags]
      list the registered appservices
  eimis-hub appservice remove [store flags] ID
      remove an appservice; its users' devices are logged out
  eimis-hub appservice bindings list|revoke …
      the practitioners who consented to an appservice's puppets standing
      for them; withdraw one (eimis-hub appservice bindings help)

Flags come before FILE or ID. Store flags: --data-dir DIR | --database URL
(or EIMIS_DATA_DIR, EIMIS_DATABASE, or --config FILE), and --server-name,
which the registration's namespaces must use. A running hub applies a
change at its next reload (trust_reload_interval).

Trust space: every user in an exclusive user namespace stands for a
practitioner of the health directory, whose idNat the namespace regex
shows: its one capture group, or its one .* run (@whatsapp_.*:hub.example
makes @whatsapp_810001045367:hub.example that practitioner's puppet).
A puppet is authorised, and shown under the practitioner's directory
name, only once the practitioner consented to that appservice: from their
own session (POST /_eimis/client/v1/bindings), or through the appservice
with a link code or Pro Santé Connect proof (POST /_eimis/appservice/v1/bindings).
`

// appserviceMain runs "eimis-hub appservice …" (args after "appservice").
func appserviceMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, appserviceUsage)
		return errors.New("appservice: a command is required")
	}
	switch cmd := args[0]; cmd {
	case "add":
		return appserviceAdd(args[1:], stdout, stderr)
	case "list":
		return appserviceList(args[1:], stdout, stderr)
	case "remove":
		return appserviceRemove(args[1:], stdout, stderr)
	case "bindings":
		return bindingsMain("appservice", args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, appserviceUsage)
		return nil
	default:
		fmt.Fprint(stderr, appserviceUsage)
		return fmt.Errorf("appservice: unknown command %q", cmd)
	}
}

func appserviceFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("eimis-hub appservice "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), appserviceUsage, "\nFlags of ", name, " (with every hub setting, of which only the store's and the server name matter here):\n")
		fs.PrintDefaults()
	}
	return fs
}

// openAudited opens the store with an audit trail: changes made from the
// command line are recorded here, since the running hub only notices them
// later, without knowing who made them.
func openAudited(ctx context.Context, cfg config.Config, stderr io.Writer) (store.Store, func(audit.Entry), func(), error) {
	log, err := telemetry.NewLogger(stderr, "warn", cfg.LogFormat)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	trail := audit.New(st, log, "cli")
	record := func(e audit.Entry) {
		e.Time, e.Actor, e.Decision = time.Now(), cliActor(), audit.Allow
		if err := trail.Record(ctx, e); err != nil {
			fmt.Fprintln(stderr, "warning: audit entry not recorded:", err)
		}
	}
	return st, record, func() { trail.Close(); st.Close() }, nil
}

func appserviceAdd(args []string, stdout, stderr io.Writer) error {
	fs := appserviceFlags("add")
	responsible := fs.String("responsible", "", "idNat of the practitioner responsible for the appservice's own accounts (required)")
	name := fs.String("name", "", `display name of the appservice's own accounts (default "<id> (application service)")`)
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("appservice add: give one registration FILE, after the flags")
	}
	if *responsible == "" {
		return errors.New("appservice add: --responsible IDNAT is required: an appservice's accounts answer to a practitioner")
	}
	path := fs.Arg(0)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("appservice add: %w", err)
	}
	reg, notes, err := appservice.ParseRegistration(data)
	for _, n := range notes {
		fmt.Fprintf(stderr, "note: %s: %s\n", path, n)
	}
	if err != nil {
		return fmt.Errorf("appservice add: %s:\n%w", path, indent(err))
	}
	// Checked before opening the store, so a refused file creates nothing.
	if _, err := reg.Validate(cfg.ServerName); err != nil {
		return fmt.Errorf("appservice add: %s:\n%w", path, indent(err))
	}
	ctx := context.Background()
	st, record, closeFn, err := openAudited(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeFn()
	pol, err := admission(ctx, st, cfg.ServerName, cfg.Professions())
	if err != nil {
		return err
	}
	c, err := appservice.Add(ctx, st, reg, appservice.AddOptions{
		ServerName: cfg.ServerName, Responsible: *responsible, Name: *name, Practitioners: pol,
	})
	if err != nil {
		return fmt.Errorf("appservice add: %s:\n%w", path, indent(err))
	}
	record(audit.Entry{Action: "appservice.add", Target: "appservice:" + c.ID, Reason: "responsible=" + *responsible})
	fmt.Fprintf(stdout, "added appservice %s (sender %s, own accounts: %s)\n", c.ID, c.Sender(), strings.Join(c.ServiceLocalparts(), ", "))
	if c.URL == "" {
		fmt.Fprintln(stdout, "  no url: no events are pushed to it")
	}
	for _, p := range c.PuppetPatterns() {
		fmt.Fprintf(stdout, "  puppets of practitioners: %s (the captured part is the idNat)\n", p)
	}
	fmt.Fprintln(stdout, "a running hub applies it at its next reload")
	return nil
}

// indent puts each of a joined error's lines under its heading.
func indent(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

func appserviceList(args []string, stdout, stderr io.Writer) error {
	fs := appserviceFlags("list")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("appservice list: unexpected argument %q", fs.Arg(0))
	}
	ctx := context.Background()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := appservice.List(ctx, st, cfg.ServerName)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no appservices")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tURL\tSENDER\tUSER NAMESPACES\tRESPONSIBLE\tADDED")
	for _, a := range list {
		var ns []string
		for _, n := range a.Namespaces.Users {
			excl := ""
			if n.Exclusive {
				excl = " (exclusive)"
			}
			ns = append(ns, n.Regex+excl)
		}
		url := a.URL
		if url == "" {
			url = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, url, a.Sender(), strings.Join(ns, ", "),
			a.ResponsibleIDNat, a.CreatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func appserviceRemove(args []string, stdout, stderr io.Writer) error {
	fs := appserviceFlags("remove")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("appservice remove: give one appservice ID, after the flags")
	}
	asID := fs.Arg(0)
	ctx := context.Background()
	st, record, closeFn, err := openAudited(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeFn()
	n, err := appservice.Remove(ctx, st, cfg.ServerName, asID)
	if err != nil {
		return fmt.Errorf("appservice remove: %w", err)
	}
	record(audit.Entry{Action: "appservice.remove", Target: "appservice:" + asID})
	fmt.Fprintf(stdout, "removed appservice %s; logged out %d of its users; a running hub applies it at its next reload\n", asID, n)
	return nil
}
