package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/eimis-hub/eimis/internal/audit"
	"io"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eimis-hub/eimis/internal/adminapi"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/telemetry"
)

const operatorUsage = `usage: eimis-hub operator COMMAND [flags]

Manage the operator allow-list: the organisations allowed to connect
bridges or federate with the hub, and the Matrix server names they run.

  eimis-hub operator add --id ID --name NAME --server S [--server S2 …] --contact C [store flags]
      register an active operator; --server is repeated for each server name
      (hostname[:port], lowercase); --contact is an e-mail address or an https URL
  eimis-hub operator list [--json] [store flags]
      list every operator (--json: the admin API's format)
  eimis-hub operator suspend    --reason R [store flags] ID
  eimis-hub operator reactivate [--reason R] [store flags] ID
  eimis-hub operator revoke     --reason R [store flags] ID
      change an operator's status; revoking is final

ID goes either first or after all the flags ("suspend acme --reason R" and
"suspend --reason R acme" both work), never between flags. Store flags:
--data-dir DIR | --database URL (or EIMIS_DATA_DIR, EIMIS_DATABASE, or
--config FILE). The CLI writes to the database directly; a running hub
applies the change at its next reload of the allow-list.
`

// operatorMain runs `eimis-hub operator …` (args after "operator").
func operatorMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, operatorUsage)
		return errors.New("operator: a command is required")
	}
	switch cmd := args[0]; cmd {
	case "add":
		return operatorAdd(args[1:], stdout, stderr)
	case "list":
		return operatorList(args[1:], stdout, stderr)
	case "suspend", "reactivate", "revoke":
		return operatorSetStatus(cmd, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, operatorUsage)
		return nil
	default:
		fmt.Fprint(stderr, operatorUsage)
		return fmt.Errorf("operator: unknown command %q", cmd)
	}
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func operatorFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("eimis-hub operator "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), operatorUsage, "\nFlags of ", name, " (with every hub setting, of which only the store's matter here):\n")
		fs.PrintDefaults()
	}
	return fs
}

// openRegistry opens the configured store under a registry. The registry
// is not loaded: the CLI only writes and lists, and both go to the store.
// The caller checks its arguments before calling it, so that a mistyped
// command line never creates a database (a misplaced --data-dir would
// otherwise open one in ./data).
func openRegistry(ctx context.Context, cfg config.Config, stderr io.Writer) (*operators.Registry, func(), error) {
	// Warnings only: the command's own output says what happened.
	log, err := telemetry.NewLogger(stderr, "warn", cfg.LogFormat)
	if err != nil {
		return nil, nil, err
	}
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	reg := operators.New(st, log)
	reg.SetOwnServerNames(cfg.ServerName)
	// Changes made from the command line are audited here: the running
	// hub only notices them later, without knowing who made them.
	trail := audit.New(st, log, "cli")
	reg.OnChange(func(c operators.Change) {
		e, ok := audit.OperatorEntry(c)
		if !ok {
			return
		}
		e.Time = time.Now()
		if err := trail.Record(ctx, e); err != nil {
			fmt.Fprintln(stderr, "warning: audit entry not recorded:", err)
		}
	})
	return reg, func() { trail.Close(); st.Close() }, nil
}

func operatorAdd(args []string, stdout, stderr io.Writer) error {
	fs := operatorFlags("add")
	id := fs.String("id", "", "operator ID: lowercase slug, [a-z0-9][a-z0-9._-]{0,63}; cannot be changed later")
	name := fs.String("name", "", "operator name, as people know it")
	var servers stringList
	fs.Var(&servers, "server", "Matrix server name the operator runs (hostname[:port]); repeat for each")
	contact := fs.String("contact", "", "security contact: e-mail address or https URL")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("operator add: unexpected argument %q (everything is given with flags)", fs.Arg(0))
	}
	ctx := context.Background()
	reg, closeStore, err := openRegistry(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	o, err := reg.Add(ctx, operators.Operator{ID: *id, Name: *name, ServerNames: servers, Contact: *contact}, cliActor())
	if err != nil {
		return cliError("add", strings.TrimSpace(*id), err)
	}
	fmt.Fprintf(stdout, "added operator %s (%s), active, servers: %s\n", o.ID, o.Name, strings.Join(o.ServerNames, ", "))
	return nil
}

func operatorList(args []string, stdout, stderr io.Writer) error {
	fs := operatorFlags("list")
	asJSON := fs.Bool("json", false, "print JSON (the admin API's format) instead of a table")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("operator list: unexpected argument %q", fs.Arg(0))
	}
	ctx := context.Background()
	reg, closeStore, err := openRegistry(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	ops, err := reg.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(adminapi.ListFrom(ops))
	}
	if len(ops) == 0 {
		fmt.Fprintln(stdout, "no operators registered")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tSERVERS\tNAME\tCONTACT")
	for _, o := range ops {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.ID, o.Status, strings.Join(o.ServerNames, ","), o.Name, o.Contact)
	}
	return tw.Flush()
}

func operatorSetStatus(cmd string, args []string, stdout, stderr io.Writer) error {
	// The flag package stops at the first non-flag argument, so an ID
	// given first is taken off before parsing, and one given last is what
	// parsing leaves over.
	id := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	fs := operatorFlags(cmd)
	usage := "why (required): told to the operator and kept in the audit"
	if cmd == "reactivate" {
		usage = "why (optional)"
	}
	reason := fs.String("reason", "", usage)
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	switch {
	case id == "" && fs.NArg() == 1:
		id = fs.Arg(0)
	case id == "" && fs.NArg() == 0:
		return fmt.Errorf("operator %s: the operator ID is missing", cmd)
	case fs.NArg() > 0:
		return fmt.Errorf("operator %s: unexpected %q: give the ID first or after all the flags", cmd, strings.Join(fs.Args(), " "))
	}
	ctx := context.Background()
	reg, closeStore, err := openRegistry(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	change := map[string]func(ctx context.Context, id, reason, actor string) (*operators.Operator, error){
		"suspend": reg.Suspend, "reactivate": reg.Reactivate, "revoke": reg.Revoke,
	}[cmd]
	o, err := change(ctx, id, *reason, cliActor())
	if err != nil {
		return cliError(cmd, id, err)
	}
	fmt.Fprintf(stdout, "operator %s is now %s", o.ID, o.Status)
	if o.StatusReason != "" {
		fmt.Fprintf(stdout, " (reason: %s)", o.StatusReason)
	}
	fmt.Fprintln(stdout, "; a running hub applies it at its next reload")
	return nil
}

// cliActor names who made a change in the hub's logs and hooks: the CLI
// has no Matrix identity, so the local account that ran it stands in.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// flagOf maps the registry's field names to this CLI's flags, so errors
// name what the user typed.
var flagOf = map[string]string{
	operators.FieldID:          "--id",
	operators.FieldName:        "--name",
	operators.FieldServerNames: "--server",
	operators.FieldContact:     "--contact",
	operators.FieldReason:      "--reason",
}

func cliError(cmd, id string, err error) error {
	var ve *operators.ValidationError
	var claimed *operators.ServerClaimedError
	switch {
	case errors.As(err, &ve):
		f := flagOf[ve.Field]
		if f == "" {
			f = ve.Field
		}
		return fmt.Errorf("operator %s: invalid %s: %s", cmd, f, ve.Reason)
	case errors.As(err, &claimed):
		return fmt.Errorf("operator %s: %s", cmd, claimed.Error())
	case errors.Is(err, operators.ErrExists):
		return fmt.Errorf("operator %s: operator %s already exists", cmd, id)
	case errors.Is(err, operators.ErrNotFound):
		return fmt.Errorf("operator %s: no operator %s", cmd, id)
	case errors.Is(err, operators.ErrRevoked):
		return fmt.Errorf("operator %s: operator %s is revoked; revocation is final", cmd, id)
	}
	return fmt.Errorf("operator %s: %w", cmd, err)
}
