package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// Store is the persistence Import and LoadIndex need; store.Store has it.
type Store interface {
	BeginDirectoryImport(ctx context.Context) (store.DirectoryImport, error)
	DirectoryPractitioners(ctx context.Context, fn func(store.DirectoryRecord) error) error
	DirectoryStats(ctx context.Context) (store.DirectoryStats, error)
}

// ErrEmptyExtract refuses an import that would list nobody: committing it
// would mark every known practitioner inactive, and a header-only file is
// far likelier a failed download than an empty profession.
var ErrEmptyExtract = errors.New("directory: extract lists no practitioner")

// importBatch is how many practitioners go into one store transaction:
// large enough that per-transaction costs vanish, small enough that memory
// stays bounded and SQLite's single writer is never held for long.
const importBatch = 1000

// ImportResult is what an import did to the stored directory.
type ImportResult struct {
	Committed   bool // false: the previous directory is still current
	Written     int  // practitioners written to the new generation
	Inactivated int  // practitioners of the previous directory now inactive
	Stats       store.DirectoryStats
	Duration    time.Duration
}

// Import reads a full extract into a new directory generation and makes it
// current only if the whole read succeeded. On any error (bad rows beyond
// opts.MaxBadRows, a malformed file, a store failure, cancellation) the new
// generation is discarded and the previous directory stays current, whole;
// the Report still describes what was read, for the operator.
func Import(ctx context.Context, st Store, r io.Reader, opts ReadOptions) (Report, ImportResult, error) {
	start := time.Now()
	var res ImportResult
	im, err := st.BeginDirectoryImport(ctx)
	if err != nil {
		return Report{}, res, fmt.Errorf("directory: import: %w", err)
	}
	refuse := func(rep Report, err error) (Report, ImportResult, error) {
		// The caller's context may be what failed; the abort must still run.
		if aerr := im.Abort(context.WithoutCancel(ctx)); aerr != nil {
			err = errors.Join(err, fmt.Errorf("directory: abort import: %w", aerr))
		}
		res.Duration = time.Since(start)
		return rep, res, fmt.Errorf("directory: import refused, previous directory kept: %w", err)
	}

	batch := make([]store.DirectoryRecord, 0, importBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := im.Add(ctx, batch); err != nil {
			return err
		}
		res.Written += len(batch)
		batch = batch[:0]
		return nil
	}
	rep, err := ReadExtract(ctx, r, opts, func(p Practitioner) error {
		rec, err := RecordFromPractitioner(p)
		if err != nil {
			return err
		}
		batch = append(batch, rec)
		if len(batch) == importBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil && rep.People == 0 {
		err = ErrEmptyExtract
	}
	if err != nil {
		return refuse(rep, err)
	}
	n, err := im.Commit(ctx)
	if err != nil {
		return refuse(rep, err)
	}
	res.Committed, res.Inactivated = true, n
	// Stats are informative only: the import has committed, so failing to
	// read them must not report the import as failed.
	res.Stats, _ = st.DirectoryStats(ctx)
	res.Duration = time.Since(start)
	return rep, res, nil
}

// LoadIndex builds an Index of the current stored directory, inactive
// practitioners included (the index keeps "known but inactive" apart from
// "unknown").
func LoadIndex(ctx context.Context, st Store) (*Index, error) {
	b := NewIndexBuilder()
	err := st.DirectoryPractitioners(ctx, func(rec store.DirectoryRecord) error {
		// Activities are decoded for their cities (searchable); the index
		// keeps nothing else of them.
		p, err := decodeRecord(rec, true)
		if err != nil {
			return err
		}
		b.Add(p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("directory: load index: %w", err)
	}
	return b.Build(), nil
}

// The stored JSON has its own field names, so that renaming a Go field does
// not silently change (or break reading of) data already in the database.
type professionJSON struct {
	Code  string `json:"code"`
	Label string `json:"label"`
}

type activityJSON struct {
	FINESS        string `json:"finess,omitempty"`
	SIRET         string `json:"siret,omitempty"`
	StructureID   string `json:"structure_id,omitempty"`
	StructureName string `json:"structure_name,omitempty"`
	PostalCode    string `json:"postal_code,omitempty"`
	City          string `json:"city,omitempty"`
}

// RecordFromPractitioner converts p to its stored form.
func RecordFromPractitioner(p Practitioner) (store.DirectoryRecord, error) {
	profs := make([]professionJSON, len(p.Professions))
	for i, pr := range p.Professions {
		profs[i] = professionJSON(pr)
	}
	acts := make([]activityJSON, len(p.Activities))
	for i, a := range p.Activities {
		acts[i] = activityJSON(a)
	}
	pj, err := json.Marshal(profs)
	if err != nil {
		return store.DirectoryRecord{}, fmt.Errorf("directory: encode %s: %w", p.IDNat, err)
	}
	aj, err := json.Marshal(acts)
	if err != nil {
		return store.DirectoryRecord{}, fmt.Errorf("directory: encode %s: %w", p.IDNat, err)
	}
	return store.DirectoryRecord{
		IDNat: p.IDNat, RPPS: p.RPPS, Civility: p.Civility, LastName: p.LastName, FirstName: p.FirstName,
		Professions: pj, Activities: aj, Active: p.Active,
	}, nil
}

// PractitionerFromRecord converts a stored record back.
func PractitionerFromRecord(rec store.DirectoryRecord) (Practitioner, error) {
	return decodeRecord(rec, true)
}

func decodeRecord(rec store.DirectoryRecord, activities bool) (Practitioner, error) {
	p := Practitioner{
		IDNat: rec.IDNat, RPPS: rec.RPPS, Civility: rec.Civility,
		LastName: rec.LastName, FirstName: rec.FirstName, Active: rec.Active,
	}
	var profs []professionJSON
	if err := json.Unmarshal(rec.Professions, &profs); err != nil {
		return p, fmt.Errorf("directory: decode professions of %s: %w", rec.IDNat, err)
	}
	// An empty list stays nil, as ReadExtract leaves it.
	for _, pr := range profs {
		p.Professions = append(p.Professions, Profession(pr))
	}
	if !activities {
		return p, nil
	}
	var acts []activityJSON
	if err := json.Unmarshal(rec.Activities, &acts); err != nil {
		return p, fmt.Errorf("directory: decode activities of %s: %w", rec.IDNat, err)
	}
	for _, a := range acts {
		p.Activities = append(p.Activities, Activity(a))
	}
	return p, nil
}
