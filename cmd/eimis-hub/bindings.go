package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/store"
)

const bindingsUsage = `usage: eimis-hub %[1]s bindings COMMAND [flags]

The practitioners each %[1]s acts for, with the proof of their consent
(psc, link_code, session; insecure or legacy when none was given).

  eimis-hub %[1]s bindings list [--%[1]s ID] [--user USER] [--json] [store flags]
      list bindings, of one %[1]s or one practitioner (idNat or user ID)
  eimis-hub %[1]s bindings revoke --%[1]s ID --user USER [store flags]
      withdraw a binding: the %[1]s may no longer act for the practitioner;
      a running hub drops it within seconds

Store flags: --data-dir DIR | --database URL (or EIMIS_DATA_DIR,
EIMIS_DATABASE, or --config FILE).
`

// bindingsMain runs `eimis-hub bridge|appservice bindings …` (args after
// "bindings"); kind is "bridge" or "appservice".
func bindingsMain(kind string, args []string, stdout, stderr io.Writer) error {
	usage := fmt.Sprintf(bindingsUsage, kind)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%s bindings: a command is required", kind)
	}
	switch cmd := args[0]; cmd {
	case "list", "revoke":
		return bindingsRun(kind, cmd, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%s bindings: unknown command %q", kind, cmd)
	}
}

func bindingsRun(kind, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub "+kind+" bindings "+cmd, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), bindingsUsage, kind)
		fmt.Fprint(fs.Output(), "\nFlags of ", cmd, " (with every hub setting, of which only the store's and server_name matter here):\n")
		fs.PrintDefaults()
	}
	appID := fs.String(kind, "", "ID of the "+kind)
	user := fs.String("user", "", "the practitioner: idNat or user ID")
	asJSON := fs.Bool("json", false, "print JSON instead of a table (list)")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s bindings %s: unexpected argument %q (everything is given with flags)", kind, cmd, fs.Arg(0))
	}
	userID := *user
	if userID != "" && !strings.HasPrefix(userID, "@") {
		userID = string(id.NewUserID(userID, cfg.ServerName))
	}
	ctx := context.Background()
	st, record, closeAll, err := openAudited(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeAll()
	// No insecure mode here: the list says whether each binding would be
	// honoured by a hub with this configuration.
	svc := consent.New(consent.Config{Store: st, BridgeRequirePSC: cfg.BridgeRequirePSCProof,
		BridgeInsecure: cfg.BridgeBindWithoutConsentInsecure,
		Audit:          func(_ context.Context, e audit.Entry) { record(e) }})
	if cmd == "revoke" {
		if *appID == "" || userID == "" {
			return fmt.Errorf("%s bindings revoke: --%s and --user are required", kind, kind)
		}
		existed, err := svc.Revoke(ctx, door.Of(door.Kind(kind), *appID), id.UserID(userID), cliActor())
		switch {
		case err != nil:
			return fmt.Errorf("%s bindings revoke: %w", kind, err)
		case !existed:
			return fmt.Errorf("%s bindings revoke: %s %s does not act for %s", kind, kind, *appID, userID)
		}
		fmt.Fprintf(stdout, "%s %s no longer acts for %s; a running hub drops the binding within seconds\n", kind, *appID, userID)
		return nil
	}
	bs, err := svc.List(ctx, store.BindingFilter{Kind: kind, AppID: *appID, UserID: userID})
	if err != nil {
		return err
	}
	wire := svc.Wire(bs)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"bindings": wire})
	}
	if len(wire) == 0 {
		fmt.Fprintln(stdout, "no bindings")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tUSER\tPROOF\tACTIVE\tBOUND\n", strings.ToUpper(kind))
	for _, b := range wire {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", b.ID, b.UserID, b.Proof, b.Active, time.UnixMilli(b.BoundAt).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
