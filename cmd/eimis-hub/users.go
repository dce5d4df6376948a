package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/schemas"
)

const userUsage = `usage: eimis-hub user create --localpart IDNAT --password P [store flags]
       eimis-hub user create --localpart L --kind organisational|applicative --name N --responsible IDNAT --password P [store flags]
       eimis-hub user create --localpart L --kind admin --name N --password P [store flags]
`

// admissionStore is what admission reads: the directory and the service
// accounts.
type admissionStore interface {
	directory.Store
	ServiceAccounts(ctx context.Context) ([]store.ServiceAccount, error)
}

// admission builds the policy the hub itself applies, from the stored
// directory and service accounts, so that accounts made from the command
// line obey the same rules as those made through the API.
func admission(ctx context.Context, st admissionStore, serverName string, professions []string) (*policy.Engine, error) {
	ix, err := directory.LoadIndex(ctx, st)
	if err != nil {
		return nil, err
	}
	var dir directory.Atomic
	dir.Swap(ix)
	pol := policy.New(serverName, &dir, professions)
	svc, err := st.ServiceAccounts(ctx)
	if err != nil {
		return nil, err
	}
	pol.SetServiceAccounts(svc)
	return pol, nil
}

func userCreate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub user create", flag.ContinueOnError)
	localpart := fs.String("localpart", "", "localpart: a practitioner's idNat (8 + RPPS), or the name of a service account")
	password := fs.String("password", "", "password (prefer EIMIS_USER_PASSWORD: flags show in ps)")
	kind := fs.String("kind", "", "service account kind: organisational, applicative or admin (empty: a practitioner's own account)")
	name := fs.String("name", "", "display name of a service account")
	responsible := fs.String("responsible", "", "idNat of the practitioner responsible for an organisational or applicative account")
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
	pol, err := admission(ctx, st, cfg.ServerName, cfg.Professions())
	if err != nil {
		return err
	}
	if *kind != "" {
		// Checked before registering, so a refused account leaves nothing
		// behind.
		if *kind != store.KindAdmin && *responsible != "" {
			if err := pol.CheckPractitioner(*responsible); err != nil {
				return fmt.Errorf("--responsible: %w", err)
			}
		}
		if err := registerService(ctx, st, *localpart, *kind, *name, *responsible); err != nil {
			return err
		}
		if pol, err = admission(ctx, st, cfg.ServerName, cfg.Professions()); err != nil {
			return err
		}
	}
	ids := identity.New(st, cfg.ServerName, 0)
	ids.SetAdmission(pol)
	uid, err := ids.CreateAccount(ctx, *localpart, *password, *kind == store.KindAdmin)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s\n", uid)
	return nil
}

// serviceRegistrar is what registerService writes.
type serviceRegistrar interface {
	CreateServiceAccount(ctx context.Context, a store.ServiceAccount) error
}

func registerService(ctx context.Context, st serviceRegistrar, localpart, kind, name, responsible string) error {
	switch kind {
	case store.KindOrganisational, store.KindApplicative:
		if _, _, err := directory.ParseIDNat(responsible); err != nil {
			return fmt.Errorf("--responsible: %q is not an idNat: a %s account needs a responsible practitioner", responsible, kind)
		}
	case store.KindAdmin:
		if responsible != "" {
			return errors.New("--responsible: an administration account has none")
		}
	default:
		return fmt.Errorf("--kind: %q is not one of organisational, applicative, admin", kind)
	}
	if name == "" {
		return errors.New("--name is required for a service account")
	}
	if _, _, err := directory.ParseIDNat(localpart); err == nil {
		return errors.New("--localpart: an idNat is a practitioner's own account, not a service account")
	}
	if err := identity.ValidateLocalpart(localpart); err != nil {
		return err
	}
	err := st.CreateServiceAccount(ctx, store.ServiceAccount{
		Localpart: localpart, Kind: kind, Name: name, ResponsibleIDNat: responsible, CreatedAt: time.Now(),
	})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("service account %s is already registered", localpart)
	}
	return err
}

// samplePassword is printed by `eimis-hub sample`: the sample accounts are
// for trying the hub on a laptop, never for a deployment.
const samplePassword = "eimis-sample"

// Sample practitioners with accounts (all fictional). The last one is
// listed by the previous extract only: it gets an account while active,
// then the current extract makes it inactive.
var sampleAccounts = []string{"810000000017", "810000000025", "810000000090"}

const sampleRetired = "810000000314"

func sample(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub sample", flag.ContinueOnError)
	cfg, st, err := openStore(fs, args, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	stats, err := st.DirectoryStats(ctx)
	if err != nil {
		return err
	}
	create := func(lp string) error {
		pol, err := admission(ctx, st, cfg.ServerName, cfg.Professions())
		if err != nil {
			return err
		}
		ids := identity.New(st, cfg.ServerName, 0)
		ids.SetAdmission(pol)
		_, err = ids.CreateAccount(ctx, lp, samplePassword, false)
		if errors.Is(err, identity.ErrUserExists) {
			return nil
		}
		return err
	}
	if stats.Generation == 0 {
		for i, path := range []string{schemas.SamplePrevious, schemas.SampleCurrent} {
			data, err := schemas.Sample.ReadFile(path)
			if err != nil {
				return err
			}
			if _, _, err := directory.Import(ctx, st, bytes.NewReader(data), directory.ReadOptions{}); err != nil {
				return fmt.Errorf("sample: %w", err)
			}
			if i == 0 {
				if err := create(sampleRetired); err != nil {
					return fmt.Errorf("sample: %w", err)
				}
			}
		}
	} else {
		fmt.Fprintln(stdout, "A directory is already loaded; the sample directory was not imported.")
	}
	for _, lp := range sampleAccounts {
		if err := create(lp); err != nil {
			return fmt.Errorf("sample account %s: %w", lp, err)
		}
	}
	pol, err := admission(ctx, st, cfg.ServerName, cfg.Professions())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Sample accounts (fictional practitioners), password %q:\n", samplePassword)
	for _, lp := range append(append([]string{}, sampleAccounts...), sampleRetired) {
		uid := identity.New(st, cfg.ServerName, 0).UserID(lp)
		name, _ := pol.DisplayName(uid)
		status := "active"
		if err := pol.CheckLogin(uid); err != nil {
			status = "refused: " + err.Error()
		}
		fmt.Fprintf(stdout, "  %-28s %-40s %s\n", uid, name, status)
	}
	return nil
}

// directorySynth writes a synthetic extract (fictional RPPS numbers
// starting with 19) for load tests and rehearsals of an import.
func directorySynth(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub directory synth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	count := fs.Int("count", 1000, "practitioners to write")
	start := fs.Int("start", 1, "serial of the first one (eimis-bench --idnat-base uses the same numbering)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *count <= 0 || *start < 0 {
		return errors.New("usage: eimis-hub directory synth [--count N] [--start S] FILE")
	}
	f, err := os.Create(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	ps := make([]directory.Practitioner, 0, *count)
	for i := range *count {
		rpps := directory.SyntheticRPPS(*start + i)
		ps = append(ps, directory.Practitioner{
			IDNat: directory.IDNatFromRPPS(rpps), RPPS: rpps, Civility: "Docteur",
			LastName: fmt.Sprintf("SYNTHETIQUE%d", *start+i), FirstName: "CHARGE", Active: true,
			Professions: []directory.Profession{{Code: "10", Label: "Médecin"}},
			Activities:  []directory.Activity{{StructureName: "CENTRE DE TEST", PostalCode: "75012", City: "PARIS"}},
		})
	}
	if err := directory.WriteExtract(f, ps); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d synthetic practitioners (serials %d..%d) to %s\n", *count, *start, *start+*count-1, fs.Arg(0))
	return nil
}
