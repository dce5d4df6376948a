package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/store"
)

const bridgeUsage = `usage: eimis-hub bridge COMMAND [flags]

Manage bridges: the credentials with which an operator's messenger
connects to the hub through the Bridge Protocol (docs/bridge-protocol.md).

  eimis-hub bridge add --operator OPERATOR --id ID [store flags]
      register a bridge of an operator of the allow-list and print its
      token, once: the hub keeps only its SHA-256. ID is a lowercase slug,
      [a-z0-9][a-z0-9._-]{0,63} (e.g. acme-prod)
  eimis-hub bridge list [--json] [store flags]
      list every bridge with its operator, status and bound practitioners
  eimis-hub bridge revoke [store flags] ID
      revoke a bridge for good; a running hub closes its connection
      within a few seconds
  eimis-hub bridge bindings list|revoke …
      the practitioners a bridge acts for, with the proof of their
      consent; withdraw one (eimis-hub bridge bindings help)

Store flags: --data-dir DIR | --database URL (or EIMIS_DATA_DIR,
EIMIS_DATABASE, or --config FILE).
`

// bridgeMain runs `eimis-hub bridge …` (args after "bridge").
func bridgeMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, bridgeUsage)
		return errors.New("bridge: a command is required")
	}
	switch cmd := args[0]; cmd {
	case "add":
		return bridgeAdd(args[1:], stdout, stderr)
	case "list":
		return bridgeList(args[1:], stdout, stderr)
	case "revoke":
		return bridgeRevoke(args[1:], stdout, stderr)
	case "bindings":
		return bindingsMain("bridge", args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, bridgeUsage)
		return nil
	default:
		fmt.Fprint(stderr, bridgeUsage)
		return fmt.Errorf("bridge: unknown command %q", cmd)
	}
}

func bridgeFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("eimis-hub bridge "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), bridgeUsage, "\nFlags of ", name, " (with every hub setting, of which only the store's matter here):\n")
		fs.PrintDefaults()
	}
	return fs
}

func bridgeAdd(args []string, stdout, stderr io.Writer) error {
	fs := bridgeFlags("add")
	operator := fs.String("operator", "", "ID of the operator (eimis-hub operator list) the bridge belongs to")
	id := fs.String("id", "", "bridge ID: lowercase slug, [a-z0-9][a-z0-9._-]{0,63}")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("bridge add: unexpected argument %q (everything is given with flags)", fs.Arg(0))
	case *operator == "":
		return errors.New("bridge add: --operator is required")
	case !gateway.ValidBridgeID(*id):
		return fmt.Errorf("bridge add: invalid --id %q: %v", *id, gateway.ErrBadBridgeID)
	}
	ctx := context.Background()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	token, b, err := gateway.AddBridge(ctx, st, *id, *operator)
	switch {
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("bridge add: bridge %s already exists", *id)
	case errors.Is(err, store.ErrRevoked):
		return fmt.Errorf("bridge add: operator %s is revoked", *operator)
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("bridge add: no operator %s (eimis-hub operator add)", *operator)
	case err != nil:
		return fmt.Errorf("bridge add: %w", err)
	}
	fmt.Fprintf(stdout, "added bridge %s of operator %s\n\ntoken: %s\n\n", b.ID, b.OperatorID, token)
	fmt.Fprintln(stdout, "Give the token to the operator over a secure channel; it is shown only now")
	fmt.Fprintln(stdout, "(the hub keeps its SHA-256). A lost token is replaced by revoking the bridge")
	fmt.Fprintln(stdout, "and adding a new one.")
	return nil
}

// bridgeJSON is a bridge as `bridge list --json` prints it.
type bridgeJSON struct {
	ID        string   `json:"id"`
	Operator  string   `json:"operator"`
	Status    string   `json:"status"`
	CreatedAt string   `json:"created_at"`
	RevokedAt string   `json:"revoked_at,omitempty"`
	Users     []string `json:"users"`
}

func bridgeList(args []string, stdout, stderr io.Writer) error {
	fs := bridgeFlags("list")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bridge list: unexpected argument %q", fs.Arg(0))
	}
	ctx := context.Background()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	bs, err := st.ListBridges(ctx)
	if err != nil {
		return err
	}
	out := make([]bridgeJSON, 0, len(bs))
	for _, b := range bs {
		users, err := st.BridgeUsers(ctx, b.ID)
		if err != nil {
			return err
		}
		j := bridgeJSON{ID: b.ID, Operator: b.OperatorID, Status: "active", CreatedAt: b.CreatedAt.UTC().Format(time.RFC3339), Users: users}
		if j.Users == nil {
			j.Users = []string{}
		}
		if b.Revoked() {
			j.Status, j.RevokedAt = "revoked", b.RevokedAt.UTC().Format(time.RFC3339)
		}
		out = append(out, j)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"bridges": out})
	}
	if len(out) == 0 {
		fmt.Fprintln(stdout, "no bridges registered")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOPERATOR\tSTATUS\tUSERS\tCREATED")
	for _, b := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.ID, b.Operator, b.Status, len(b.Users), b.CreatedAt)
	}
	return tw.Flush()
}

func bridgeRevoke(args []string, stdout, stderr io.Writer) error {
	// As for operators: the ID may come first or after all the flags.
	id := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	fs := bridgeFlags("revoke")
	cfg, err := loadConfig(fs, args, stderr)
	if err != nil {
		return err
	}
	switch {
	case id == "" && fs.NArg() == 1:
		id = fs.Arg(0)
	case id == "" && fs.NArg() == 0:
		return errors.New("bridge revoke: the bridge ID is missing")
	case fs.NArg() > 0:
		return fmt.Errorf("bridge revoke: unexpected %q: give the ID first or after all the flags", strings.Join(fs.Args(), " "))
	}
	ctx := context.Background()
	st, err := hub.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	b, err := st.RevokeBridge(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("bridge revoke: no bridge %s", id)
	} else if err != nil {
		return fmt.Errorf("bridge revoke: %w", err)
	}
	fmt.Fprintf(stdout, "bridge %s is revoked (since %s); a running hub closes its connection within seconds\n",
		b.ID, b.RevokedAt.UTC().Format(time.RFC3339))
	return nil
}
