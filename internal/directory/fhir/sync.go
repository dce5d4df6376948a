package fhir

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/store"
)

// SyncStore is what Sync persists into; store.Store has it.
type SyncStore interface {
	directory.Store
	UpsertDirectory(ctx context.Context, recs []store.DirectoryRecord) (int, error)
	GetMeta(ctx context.Context, key string) (string, error)
	PutMeta(ctx context.Context, key, value string) error
}

// metaSince remembers where the last successful sync started, for the
// next one's _lastUpdated.
const metaSince = "directory.fhir.since"

// metaGeneration is the directory generation metaSince applies to. Another
// generation means something else (a bulk file import) replaced the
// directory after our last sync: that file may predate changes the cursor
// says we already have (practitioners deactivated since, listed active
// again), and an incremental sync would never ask for them again, so the
// next sync must be full.
const metaGeneration = "directory.fhir.generation"

// sinceMargin overlaps consecutive incremental syncs: the API's clock and
// indexing delay are not ours, and applying a change twice is harmless.
const sinceMargin = 10 * time.Minute

const syncBatch = 500

// SyncResult says what one sync did.
type SyncResult struct {
	Full          bool // a whole new generation (first sync or forced)
	Practitioners int
	Inactivated   int
	Since         time.Time // _lastUpdated used; zero for a full sync
	Stats         Stats
	Duration      time.Duration
}

// Sync brings the stored directory up to date from the FHIR API. The first
// sync (or full) reads everything into a new generation, switched to only
// when the whole read succeeded, like a file import; later ones ask for
// what changed since the previous successful sync and update the current
// generation in place. A failure keeps the last good directory and does
// not move the cursor, so the next sync asks for the same changes again.
func Sync(ctx context.Context, st SyncStore, c *Client, full bool) (SyncResult, error) {
	start := time.Now()
	res := SyncResult{}
	stats, err := st.DirectoryStats(ctx)
	if err != nil {
		return res, fmt.Errorf("fhir sync: %w", err)
	}
	var since time.Time
	if v, err := st.GetMeta(ctx, metaSince); err == nil {
		since, _ = time.Parse(time.RFC3339, v)
	} else if !errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("fhir sync: %w", err)
	}
	var syncedGen int64
	if v, err := st.GetMeta(ctx, metaGeneration); err == nil {
		syncedGen, _ = strconv.ParseInt(v, 10, 64)
	} else if !errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("fhir sync: %w", err)
	}
	res.Full = full || stats.Generation == 0 || since.IsZero() || syncedGen != stats.Generation
	if res.Full {
		err = fullSync(ctx, st, c, &res)
	} else {
		res.Since = since
		err = incrementalSync(ctx, st, c, since, &res)
	}
	res.Duration = time.Since(start)
	if err != nil {
		return res, err
	}
	// An incremental sync wrote into the generation current when it
	// started; if an import switched generations meanwhile, recording the
	// old one makes the next sync full, as it should be.
	gen := stats.Generation
	if res.Full {
		// The import does not say which generation it committed. Another
		// import committing in the instant before this read would be
		// mistaken for ours; imports are rare and operator-driven.
		after, err := st.DirectoryStats(ctx)
		if err != nil {
			return res, fmt.Errorf("fhir sync: save cursor: %w", err)
		}
		gen = after.Generation
	}
	// Either write alone is safe after a crash: a stale generation forces
	// a full sync, a stale since only widens the next incremental one.
	if err := st.PutMeta(ctx, metaSince, start.Add(-sinceMargin).UTC().Format(time.RFC3339)); err != nil {
		return res, fmt.Errorf("fhir sync: save cursor: %w", err)
	}
	if err := st.PutMeta(ctx, metaGeneration, strconv.FormatInt(gen, 10)); err != nil {
		return res, fmt.Errorf("fhir sync: save cursor: %w", err)
	}
	return res, nil
}

func fullSync(ctx context.Context, st SyncStore, c *Client, res *SyncResult) error {
	im, err := st.BeginDirectoryImport(ctx)
	if err != nil {
		return fmt.Errorf("fhir sync: %w", err)
	}
	defer im.Abort(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	batch := make([]store.DirectoryRecord, 0, syncBatch)
	seen := map[string]bool{}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := im.Add(ctx, batch)
		batch = batch[:0]
		return err
	}
	res.Stats, err = c.Practitioners(ctx, time.Time{}, func(p directory.Practitioner) error {
		// A practitioner can come back on a later page when the API's
		// paging shifts; the first one read wins.
		if seen[p.IDNat] {
			return nil
		}
		seen[p.IDNat] = true
		rec, err := directory.RecordFromPractitioner(p)
		if err != nil {
			return err
		}
		batch = append(batch, rec)
		res.Practitioners++
		if len(batch) == syncBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil && res.Practitioners == 0 {
		err = directory.ErrEmptyExtract
	}
	if err != nil {
		return fmt.Errorf("fhir sync: full read refused, previous directory kept: %w", err)
	}
	n, err := im.Commit(ctx)
	if err != nil {
		return fmt.Errorf("fhir sync: %w", err)
	}
	res.Inactivated = n
	return nil
}

func incrementalSync(ctx context.Context, st SyncStore, c *Client, since time.Time, res *SyncResult) error {
	batch := make([]store.DirectoryRecord, 0, syncBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := st.UpsertDirectory(ctx, batch)
		res.Inactivated += n
		batch = batch[:0]
		return err
	}
	var err error
	res.Stats, err = c.Practitioners(ctx, since, func(p directory.Practitioner) error {
		rec, err := directory.RecordFromPractitioner(p)
		if err != nil {
			return err
		}
		batch = append(batch, rec)
		res.Practitioners++
		if len(batch) == syncBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("fhir sync: incremental: %w", err)
	}
	return nil
}
