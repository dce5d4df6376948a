package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// Purger deletes the oldest entries; store.Store implements it.
type Purger interface {
	PurgeAudit(ctx context.Context, before time.Time, limit int, record func(store.AuditPurge) store.AuditEntry, hash store.AuditHashFunc) (store.AuditPurge, error)
}

// purgeBatch bounds one purge transaction. A first purge may face months
// of entries; on SQLite one huge delete would hold the only writer (and
// so every send) for seconds. A variable for the tests.
var purgeBatch = 10000

// DefaultRetentionEvery is how often RunRetention purges when not told.
const DefaultRetentionEvery = time.Hour

// Purge deletes the entries older than before, oldest first, and returns
// how many it deleted. Each batch moves the anchor and records an
// audit.purge entry by actor, in its own transaction, so the chain stays
// verifiable after every step, even if Purge is interrupted. The purge
// stops at the first entry recorded at or after before, even if later
// entries are older (clocks of several instances differ): the trail only
// ever loses its oldest part, never a hole. before must not be in the
// future, where the purge would chase its own entries.
func Purge(ctx context.Context, st Purger, before time.Time, actor string) (int, error) {
	return purge(ctx, st, before, actor, "")
}

// Purge is Purge recording the trail's instance.
func (t *Trail) Purge(ctx context.Context, before time.Time, actor string) (int, error) {
	return purge(ctx, t.st, before, actor, t.instance)
}

func purge(ctx context.Context, st Purger, before time.Time, actor, instance string) (int, error) {
	// Whole milliseconds, as stored: the audit.purge entries, stamped now
	// and truncated, then never fall before the cut.
	before = before.UTC().Truncate(time.Millisecond)
	if before.After(time.Now()) {
		return 0, fmt.Errorf("audit: purge: %s is in the future", formatTime(before))
	}
	if actor == "" {
		actor = ActorHub
	}
	record := func(p store.AuditPurge) Entry {
		e := Entry{Time: time.Now(), Actor: actor, Action: ActionAuditPurge, Decision: Allow,
			Reason: purgeReason(p), Instance: instance}
		// Cannot fail: action and decision are set.
		_ = normalise(&e)
		return e
	}
	total := 0
	for {
		p, err := st.PurgeAudit(ctx, before, purgeBatch, record, Hash)
		if err != nil {
			return total, fmt.Errorf("audit: purge: %w", err)
		}
		if p.Deleted == 0 {
			return total, nil
		}
		total += p.Deleted
	}
}

// RunRetention purges entries older than retention now and then every
// every (DefaultRetentionEvery if 0) until ctx is done. Several instances
// may run it: the store serialises purges, and a purge with nothing to
// delete records nothing. A retention of 0 keeps entries forever and
// returns at once.
func (t *Trail) RunRetention(ctx context.Context, retention, every time.Duration) {
	if retention <= 0 {
		return
	}
	if every <= 0 {
		every = DefaultRetentionEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		before := time.Now().Add(-retention)
		n, err := t.Purge(ctx, before, ActorHub)
		switch {
		case err != nil && ctx.Err() == nil:
			t.log.Error("audit retention purge failed", "deleted", n, "err", err)
		case n > 0:
			t.log.Info("audit entries purged", "deleted", n, "before", formatTime(before))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
