package appservice

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/store"
)

// AddOptions are what registering an appservice needs beyond its file.
type AddOptions struct {
	ServerName string
	// Responsible is the idNat of the practitioner answerable for the
	// appservice's own accounts (its sender, its bot), which are
	// applicative service accounts: they are authorised exactly as long
	// as that practitioner is.
	Responsible string
	// Name is the display name of those accounts ("<id> (application
	// service)" when empty).
	Name string
	// Practitioners checks Responsible against the directory.
	Practitioners interface{ CheckPractitioner(idnat string) error }
	Now           time.Time
}

// AdminStore is what the CLI's Add, List and Remove need: the appservice
// tables, the accounts and service accounts a registration creates, and
// the devices and memberships they touch.
type AdminStore interface {
	store.AppserviceStore

	GetAccount(ctx context.Context, localpart string) (*store.Account, error)
	CreateAccount(ctx context.Context, a store.Account) error
	Accounts(ctx context.Context, fn func(store.Account) error) error
	ListDevices(ctx context.Context, localpart string) ([]store.Device, error)
	DeleteAllDevices(ctx context.Context, localpart string) error
	CreateServiceAccount(ctx context.Context, a store.ServiceAccount) error
	ServiceAccounts(ctx context.Context) ([]store.ServiceAccount, error)
	UserMemberships(ctx context.Context, userID string) ([]store.Membership, error)
	MaxPos(ctx context.Context) (int64, error)
}

// Add registers an appservice in the store, after checking it against
// the others: no two appservices may hold overlapping namespaces where
// either is exclusive, nor share a token. Running hubs pick it up at
// their next reload.
func Add(ctx context.Context, st AdminStore, reg *Registration, o AddOptions) (*Compiled, error) {
	c, err := reg.Validate(o.ServerName)
	if err != nil {
		return nil, err
	}
	if _, _, err := directory.ParseIDNat(o.Responsible); err != nil {
		return nil, fmt.Errorf("responsible: %q is not an idNat: an appservice's accounts need a responsible practitioner", o.Responsible)
	}
	if o.Practitioners != nil {
		if err := o.Practitioners.CheckPractitioner(o.Responsible); err != nil {
			return nil, fmt.Errorf("responsible: %w", err)
		}
	}
	name := o.Name
	if name == "" {
		name = reg.ID + " (application service)"
	}
	rows, err := st.Appservices(ctx)
	if err != nil {
		return nil, err
	}
	hash := sha256.Sum256([]byte(reg.ASToken))
	for _, row := range rows {
		if row.ID == reg.ID {
			return nil, fmt.Errorf("id: appservice %s is already registered (remove it first to replace it)", reg.ID)
		}
		if string(row.ASTokenHash) == string(hash[:]) {
			return nil, fmt.Errorf("as_token: already the token of appservice %s", row.ID)
		}
		other, err := compileStored(row, o.ServerName)
		if err != nil {
			continue // unusable, so it claims nothing
		}
		if err := conflicts(c, other); err != nil {
			return nil, err
		}
	}
	services, err := serviceAccounts(ctx, st, c, o.Responsible)
	if err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	for _, lp := range services {
		err := st.CreateServiceAccount(ctx, store.ServiceAccount{
			Localpart: lp, Kind: store.KindApplicative, Name: name, ResponsibleIDNat: o.Responsible, CreatedAt: now,
		})
		if err != nil && !errors.Is(err, store.ErrExists) {
			return nil, err
		}
		// No password: the appservice acts as it with its as_token.
		err = st.CreateAccount(ctx, store.Account{Localpart: lp, DisplayName: name, CreatedAt: now})
		if err != nil && !errors.Is(err, store.ErrExists) {
			return nil, err
		}
	}
	start, err := st.MaxPos(ctx)
	if err != nil {
		return nil, err
	}
	regJSON, err := json.Marshal(c.Registration)
	if err != nil {
		return nil, err
	}
	err = st.CreateAppservice(ctx, store.Appservice{
		ID: reg.ID, Registration: regJSON, ASTokenHash: hash[:], HSToken: reg.HSToken,
		ResponsibleIDNat: o.Responsible, StartPos: start, CreatedAt: now,
	})
	if errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("appservice %s, or its as_token, is already registered", reg.ID)
	} else if err != nil {
		return nil, err
	}
	// Rooms its users are already in (an appservice removed and added
	// again, say with new tokens) are its rooms from the start.
	if err := seedMembers(ctx, st, c, o.ServerName); err != nil {
		return nil, fmt.Errorf("appservice %s registered, but its users' rooms could not be listed: %w", reg.ID, err)
	}
	return c, nil
}

// conflicts refuses namespaces that overlap another appservice's where
// either side is exclusive: two owners for one user (or alias, or room)
// would let each act as the other's.
func conflicts(c, other *Compiled) error {
	kinds := []struct {
		name      string
		mine, his []compiledNS
	}{{"users", c.users, other.users}, {"aliases", c.aliases, other.aliases}, {"rooms", c.rooms, other.rooms}}
	for _, k := range kinds {
		for i, a := range k.mine {
			for _, b := range k.his {
				if !a.Exclusive && !b.Exclusive {
					continue
				}
				over, err := Overlaps(a.Regex, b.Regex)
				if err != nil || over {
					return fmt.Errorf("namespaces.%s[%d].regex: %q overlaps %q of appservice %s, and one of them is exclusive",
						k.name, i, a.Regex, b.Regex, other.ID)
				}
			}
		}
	}
	if other.Exclusive(c.sender) || other.sender == c.sender {
		return fmt.Errorf("sender_localpart: %s belongs to appservice %s", c.sender, other.ID)
	}
	if c.Exclusive(other.sender) {
		return fmt.Errorf("namespaces.users: they hold %s, the sender of appservice %s", other.sender, other.ID)
	}
	return nil
}

// serviceAccounts lists the appservice's own accounts, refusing names
// already registered to someone else.
func serviceAccounts(ctx context.Context, st AdminStore, c *Compiled, responsible string) ([]string, error) {
	existing, err := st.ServiceAccounts(ctx)
	if err != nil {
		return nil, err
	}
	byLP := map[string]store.ServiceAccount{}
	for _, a := range existing {
		byLP[a.Localpart] = a
	}
	lps := c.ServiceLocalparts()
	for _, lp := range lps {
		if _, _, err := directory.ParseIDNat(lp); err == nil {
			return nil, fmt.Errorf("sender_localpart: %s is a practitioner's idNat, not an appservice account", lp)
		}
		if a, ok := byLP[lp]; ok && (a.Kind != store.KindApplicative || a.ResponsibleIDNat != responsible) {
			return nil, fmt.Errorf("account %s is already registered as a %s account under %s", lp, a.Kind, a.ResponsibleIDNat)
		}
		if _, ok := byLP[lp]; !ok {
			// An existing ordinary account by that name is someone else's.
			if _, err := st.GetAccount(ctx, lp); err == nil {
				return nil, fmt.Errorf("account %s already exists and is not this appservice's", lp)
			} else if !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
	}
	return lps, nil
}

func seedMembers(ctx context.Context, st AdminStore, c *Compiled, serverName string) error {
	var users []string
	err := st.Accounts(ctx, func(a store.Account) error {
		if u := "@" + a.Localpart + ":" + serverName; c.IsUser(u) {
			users = append(users, u)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range users {
		mems, err := st.UserMemberships(ctx, u)
		if err != nil {
			return err
		}
		for _, m := range mems {
			if err := st.PutAppserviceMember(ctx, c.ID, store.AppserviceMember{
				RoomID: m.RoomID, UserID: u, Membership: m.Membership, Pos: m.Pos,
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Registered is a stored registration, for listings.
type Registered struct {
	*Compiled
	ResponsibleIDNat string
	CreatedAt        time.Time
}

// List returns the stored registrations.
func List(ctx context.Context, st AdminStore, serverName string) ([]Registered, error) {
	rows, err := st.Appservices(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Registered, 0, len(rows))
	for _, row := range rows {
		c, err := compileStored(row, serverName)
		if err != nil {
			return nil, fmt.Errorf("appservice %s: %w", row.ID, err)
		}
		out = append(out, Registered{Compiled: c, ResponsibleIDNat: row.ResponsibleIDNat, CreatedAt: row.CreatedAt})
	}
	return out, nil
}

// Remove deletes a registration and its delivery state, and logs out
// every device its users obtained with m.login.application_service:
// without the appservice, nobody may act as them. It returns how many
// users were logged out. The accounts and their applicative
// registrations stay, as every account does, with nobody able to use
// them.
func Remove(ctx context.Context, st AdminStore, serverName, asID string) (int, error) {
	rows, err := st.Appservices(ctx)
	if err != nil {
		return 0, err
	}
	var c *Compiled
	for _, row := range rows {
		if row.ID == asID {
			if c, err = compileStored(row, serverName); err != nil {
				c = nil // still removable; its users cannot be listed
			}
		}
	}
	if err := st.DeleteAppservice(ctx, asID); errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("no appservice %q", asID)
	} else if err != nil {
		return 0, err
	}
	if c == nil {
		return 0, nil
	}
	var users []string
	err = st.Accounts(ctx, func(a store.Account) error {
		if c.Owns(string(id.NewUserID(a.Localpart, serverName))) {
			users = append(users, a.Localpart)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, lp := range users {
		devs, err := st.ListDevices(ctx, lp)
		if err != nil {
			return n, err
		}
		if len(devs) == 0 {
			continue
		}
		if err := st.DeleteAllDevices(ctx, lp); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
