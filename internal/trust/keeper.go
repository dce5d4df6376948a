// Package trust keeps a hub instance's view of the trust space current:
// it loads the health directory and the service accounts into the policy
// engine's snapshots, notices changes made elsewhere (an import by the
// CLI, a FHIR sync, another instance) and acts on them. When the directory
// withdraws someone's authorisation, the keeper revokes their sessions and
// takes them out of every room, with the reason in the membership event.
package trust

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/directory/fhir"
	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/telemetry"
)

// Removal is one person the keeper took out of the trust space.
type Removal struct {
	UserID id.UserID
	Code   policy.Code
	Reason string
	Rooms  []id.RoomID
}

// Store is the persistence the keeper needs: the directory (read, and
// written by the FHIR sync), the accounts and service accounts it checks,
// and the devices and memberships of the people it removes.
type Store interface {
	fhir.SyncStore
	DirectoryRevision(ctx context.Context) (int64, error)
	ServiceAccounts(ctx context.Context) ([]store.ServiceAccount, error)
	Accounts(ctx context.Context, fn func(store.Account) error) error
	ListDevices(ctx context.Context, localpart string) ([]store.Device, error)
	UserMemberships(ctx context.Context, userID string) ([]store.Membership, error)
}

// Config wires the keeper.
type Config struct {
	Store   Store
	Dir     *directory.Atomic
	Policy  *policy.Engine
	Rooms   *rooms.Server
	IDs     *identity.Service
	Log     *slog.Logger
	Metrics *telemetry.Metrics
	// OnRemoved is told about every removal (the audit trail).
	OnRemoved func(ctx context.Context, r Removal)
	// OnSynced is told about every FHIR sync attempt (the audit trail).
	OnSynced func(ctx context.Context, full bool, practitioners, inactivated int, err error)
}

// Keeper is the trust space's caretaker for one hub instance.
type Keeper struct {
	cfg Config

	mu       sync.Mutex // serialises Refresh and Sweep
	revision int64
	loaded   bool
	services int

	stateMu   sync.Mutex
	fhirOK    time.Time
	fhirErr   error
	fhirSince time.Time // when the current run of failures began
}

// New returns a keeper; call Load before serving.
func New(cfg Config) *Keeper { return &Keeper{cfg: cfg} }

// Load builds the snapshots from the store. A hub with no directory yet
// starts anyway (and refuses everyone, which /_eimis/ready reports).
func (k *Keeper) Load(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, err := k.reload(ctx, true)
	return err
}

// reload refreshes the snapshots; the index only when the stored
// revision moved (or force). It reports whether anything changed.
func (k *Keeper) reload(ctx context.Context, force bool) (bool, error) {
	changed := false
	rev, err := k.cfg.Store.DirectoryRevision(ctx)
	if err != nil {
		return false, fmt.Errorf("trust: directory revision: %w", err)
	}
	if force || !k.loaded || rev != k.revision {
		start := time.Now()
		ix, err := directory.LoadIndex(ctx, k.cfg.Store)
		if err != nil {
			return false, fmt.Errorf("trust: %w", err)
		}
		k.cfg.Dir.Swap(ix)
		if k.loaded {
			k.cfg.Log.Info("directory reloaded", "revision", rev, "practitioners", ix.Len(), "took", time.Since(start).Round(time.Millisecond))
		} else {
			k.cfg.Log.Info("directory loaded", "revision", rev, "practitioners", ix.Len(), "took", time.Since(start).Round(time.Millisecond))
		}
		k.revision, k.loaded, changed = rev, true, true
	}
	svc, err := k.cfg.Store.ServiceAccounts(ctx)
	if err != nil {
		return changed, fmt.Errorf("trust: service accounts: %w", err)
	}
	// Registrations are only ever added, so a new count means a change.
	if len(svc) != k.services {
		k.cfg.Policy.SetServiceAccounts(svc)
		k.services, changed = len(svc), true
	}
	return changed, nil
}

// Refresh picks up changes made elsewhere and, when the directory changed,
// sweeps out whoever lost their authorisation.
func (k *Keeper) Refresh(ctx context.Context) ([]Removal, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	changed, err := k.reload(ctx, false)
	if err != nil || !changed {
		return nil, err
	}
	return k.sweep(ctx)
}

// Sweep checks every account against the current snapshots.
func (k *Keeper) Sweep(ctx context.Context) ([]Removal, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sweep(ctx)
}

func (k *Keeper) sweep(ctx context.Context) ([]Removal, error) {
	if k.cfg.Dir.Load().Len() == 0 {
		// Deny when unsure, but do not act: an empty directory is a
		// missing import, not a nation of struck-off practitioners.
		return nil, nil
	}
	var refused []Removal
	err := k.cfg.Store.Accounts(ctx, func(a store.Account) error {
		uid := k.cfg.IDs.UserID(a.Localpart)
		ref, ok := policy.AsRefusal(k.cfg.Policy.CheckUser(uid))
		if ok && ref.Definite() {
			refused = append(refused, Removal{UserID: uid, Code: ref.Code, Reason: ref.Error()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("trust: sweep: %w", err)
	}
	var done []Removal
	var errs []error
	for _, r := range refused {
		rooms, sessions, err := k.remove(ctx, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Rooms = rooms
		// Someone refused long ago has nothing left to remove: report only
		// what this sweep changed, so the audit trail is not flooded at
		// every directory refresh.
		if len(rooms) > 0 || sessions > 0 {
			k.cfg.Metrics.MembersRemoved(ctx, len(rooms))
			k.cfg.Log.Info("authorisation withdrawn", "user", r.UserID, "code", r.Code, "rooms_left", len(rooms))
			if k.cfg.OnRemoved != nil {
				k.cfg.OnRemoved(ctx, r)
			}
			done = append(done, r)
		}
	}
	return done, errors.Join(errs...)
}

// remove revokes a user's sessions and makes them leave every room they
// are in or invited to. The leave is the user's own membership event,
// built by the hub (as a homeserver does when it deactivates an account),
// so it passes the room's auth rules whatever the power levels are; the
// reason tells the other members why.
func (k *Keeper) remove(ctx context.Context, r Removal) ([]id.RoomID, int, error) {
	devs, err := k.cfg.Store.ListDevices(ctx, r.UserID.Localpart())
	if err != nil {
		return nil, 0, fmt.Errorf("trust: devices of %s: %w", r.UserID, err)
	}
	if len(devs) > 0 {
		if err := k.cfg.IDs.RevokeUser(ctx, r.UserID); err != nil {
			return nil, 0, fmt.Errorf("trust: revoke %s: %w", r.UserID, err)
		}
	}
	mems, err := k.cfg.Store.UserMemberships(ctx, string(r.UserID))
	if err != nil {
		return nil, 0, fmt.Errorf("trust: memberships of %s: %w", r.UserID, err)
	}
	content, _ := json.Marshal(map[string]string{"membership": "leave", "reason": r.Reason})
	var left []id.RoomID
	var errs []error
	for _, m := range mems {
		switch m.Membership {
		case "join", "invite", "knock":
		default:
			continue
		}
		sk := string(r.UserID)
		_, err := k.cfg.Rooms.Send(ctx, rooms.Submit{
			RoomID: id.RoomID(m.RoomID), Sender: r.UserID, Type: "m.room.member", StateKey: &sk, Content: content,
		})
		if errors.Is(err, rooms.ErrForbidden) {
			// Another instance sweeping the same change got there first.
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("trust: remove %s from %s: %w", r.UserID, m.RoomID, err))
			continue
		}
		left = append(left, id.RoomID(m.RoomID))
	}
	return left, len(devs), errors.Join(errs...)
}

// Run refreshes every interval until ctx ends.
func (k *Keeper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := k.Refresh(ctx); err != nil && ctx.Err() == nil {
			k.cfg.Log.Warn("trust refresh failed; keeping the current directory", "err", err)
		}
	}
}

// RunFHIR syncs from the Annuaire Santé FHIR API at start and then every
// interval, refreshing the snapshots after each success. A failure keeps
// the last good directory and shows on Ping and the metrics. Every
// fullEvery, the sync is a full one: an incremental search by
// _lastUpdated never sees a practitioner deleted from the API, and a full
// read marks them inactive.
func (k *Keeper) RunFHIR(ctx context.Context, c *fhir.Client, every, fullEvery time.Duration) {
	var lastFull time.Time
	for {
		full := fullEvery > 0 && !lastFull.IsZero() && time.Since(lastFull) >= fullEvery
		if res, err := k.SyncFHIR(ctx, c, full); err == nil && (res.Full || lastFull.IsZero()) {
			lastFull = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// SyncFHIR runs one sync and records its outcome.
func (k *Keeper) SyncFHIR(ctx context.Context, c *fhir.Client, full bool) (fhir.SyncResult, error) {
	res, err := fhir.Sync(ctx, k.cfg.Store, c, full)
	if k.cfg.OnSynced != nil && ctx.Err() == nil {
		k.cfg.OnSynced(ctx, res.Full, res.Practitioners, res.Inactivated, err)
	}
	k.stateMu.Lock()
	if err != nil {
		if k.fhirErr == nil {
			k.fhirSince = time.Now()
		}
		k.fhirErr = err
	} else {
		k.fhirErr, k.fhirOK = nil, time.Now()
	}
	k.stateMu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			k.cfg.Log.Warn("FHIR directory sync failed; keeping the last good directory", "err", err)
		}
		return res, err
	}
	k.cfg.Log.Info("FHIR directory sync", "full", res.Full, "practitioners", res.Practitioners,
		"inactivated", res.Inactivated, "pages", res.Stats.Pages, "retries", res.Stats.Retries, "took", res.Duration.Round(time.Millisecond))
	if _, err := k.Refresh(ctx); err != nil {
		k.cfg.Log.Warn("trust refresh after FHIR sync failed", "err", err)
	}
	return res, nil
}

// Degraded is a readiness state that must not take the instance out of a
// load balancer: it serves correctly, from data that may be stale.
type Degraded struct{ Msg string }

func (d *Degraded) Error() string { return d.Msg }

// Degraded marks the error for the readiness handler.
func (d *Degraded) Degraded() bool { return true }

// Ping is the directory's readiness: not ready without a directory (every
// participant would be refused), degraded while FHIR syncs fail.
func (k *Keeper) Ping(context.Context) error {
	if k.cfg.Dir.Load().Len() == 0 {
		return errors.New("no health directory loaded: every participant is refused (import one with `eimis-hub directory import` or configure directory_fhir_url)")
	}
	k.stateMu.Lock()
	defer k.stateMu.Unlock()
	if k.fhirErr != nil {
		last := "never"
		if !k.fhirOK.IsZero() {
			last = k.fhirOK.UTC().Format(time.RFC3339)
		}
		return &Degraded{Msg: fmt.Sprintf("FHIR sync failing since %s (last success %s), serving the last good directory: %v",
			k.fhirSince.UTC().Format(time.RFC3339), last, k.fhirErr)}
	}
	return nil
}

// State feeds the directory gauges.
func (k *Keeper) State() telemetry.DirectoryState {
	k.stateMu.Lock()
	defer k.stateMu.Unlock()
	k.mu.Lock() // revision
	rev := k.revision
	k.mu.Unlock()
	return telemetry.DirectoryState{
		Entries: k.cfg.Dir.Load().Len(), Revision: rev, FHIRLastSuccess: k.fhirOK, FHIRFailing: k.fhirErr != nil,
	}
}
