package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/eimis-hub/eimis/internal/store"
)

// Health directory.

// directoryCleanupBatch bounds each transaction deleting stale directory
// rows: the writer connection serves the whole hub, and deleting a million
// rows at once would hold message sends up for seconds.
const directoryCleanupBatch = 5000

var errImportDone = errors.New("sqlite: directory import already committed or aborted")

func (s *Store) BeginDirectoryImport(ctx context.Context) (store.DirectoryImport, error) {
	var gen int64
	// Both assignments read the old last_generation, so they agree.
	err := s.w.QueryRowContext(ctx, `UPDATE directory_meta
		SET last_generation = last_generation + 1, building_generation = last_generation + 1
		WHERE id = 1 RETURNING building_generation`).Scan(&gen)
	if err != nil {
		return nil, fmt.Errorf("sqlite: begin directory import: %w", err)
	}
	if err := s.cleanDirectory(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: begin directory import: %w", err)
	}
	return &directoryImport{s: s, gen: gen}, nil
}

// cleanDirectory deletes the rows of every generation that is neither
// current nor being built. Each batch re-reads both in its own
// transaction, so an import starting meanwhile never loses rows.
func (s *Store) cleanDirectory(ctx context.Context) error {
	for {
		n, err := s.cleanDirectoryBatch(ctx)
		if err != nil {
			return err
		}
		if n < directoryCleanupBatch {
			return nil
		}
	}
}

func (s *Store) cleanDirectoryBatch(ctx context.Context) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("clean directory: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var cur, bld int64
	if err := tx.QueryRowContext(ctx, `SELECT current_generation, building_generation FROM directory_meta WHERE id = 1`).Scan(&cur, &bld); err != nil {
		return 0, fmt.Errorf("clean directory: %w", err)
	}
	lo, hi := min(cur, bld), max(cur, bld)
	// Three open ranges around the two live generations, because a range
	// is what the primary key index serves; "generation NOT IN (…)" would
	// scan the whole table for every batch.
	var deleted int64
	for _, r := range [][2]int64{{-1, lo}, {lo, hi}, {hi, math.MaxInt64}} {
		if deleted >= directoryCleanupBatch {
			break
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM directory_practitioners WHERE rowid IN (
			SELECT rowid FROM directory_practitioners WHERE generation > ? AND generation < ? LIMIT ?)`,
			r[0], r[1], directoryCleanupBatch-deleted)
		if err != nil {
			return 0, fmt.Errorf("clean directory: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("clean directory: %w", err)
		}
		deleted += n
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("clean directory: commit: %w", err)
	}
	return deleted, nil
}

type directoryImport struct {
	s    *Store
	gen  int64
	done bool
}

// claim checks, inside tx, that this import still owns the generation
// being built and returns the current one.
func (im *directoryImport) claim(ctx context.Context, tx *sql.Tx) (cur int64, err error) {
	var bld int64
	if err := tx.QueryRowContext(ctx, `SELECT current_generation, building_generation FROM directory_meta WHERE id = 1`).Scan(&cur, &bld); err != nil {
		return 0, err
	}
	if bld != im.gen {
		return 0, fmt.Errorf("generation %d: %w", im.gen, store.ErrImportSuperseded)
	}
	return cur, nil
}

func (im *directoryImport) Add(ctx context.Context, recs []store.DirectoryRecord) error {
	if im.done {
		return errImportDone
	}
	if len(recs) == 0 {
		return nil
	}
	tx, err := im.s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: directory add: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := im.claim(ctx, tx); err != nil {
		return fmt.Errorf("sqlite: directory add: %w", err)
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO directory_practitioners
		(generation, idnat, rpps, civility, last_name, first_name, professions, activities, active, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: directory add: %w", err)
	}
	defer st.Close()
	now := ms(time.Now())
	for _, r := range recs {
		_, err := st.ExecContext(ctx, im.gen, r.IDNat, r.RPPS, r.Civility, r.LastName, r.FirstName,
			jsonText(r.Professions), jsonText(r.Activities), r.Active, now)
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
			return fmt.Errorf("sqlite: directory add %s: %w", r.IDNat, store.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("sqlite: directory add %s: %w", r.IDNat, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: directory add: commit: %w", err)
	}
	return nil
}

// jsonText stores an absent list as an empty one, so readers always get
// valid JSON back.
func jsonText(b json.RawMessage) string {
	if len(b) == 0 {
		return "[]"
	}
	return string(b)
}

func (im *directoryImport) Commit(ctx context.Context) (int, error) {
	if im.done {
		return 0, errImportDone
	}
	tx, err := im.s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	cur, err := im.claim(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: %w", err)
	}
	now := ms(time.Now())
	const absent = `FROM directory_practitioners o WHERE o.generation = ? AND NOT EXISTS (
		SELECT 1 FROM directory_practitioners n WHERE n.generation = ? AND n.idnat = o.idnat)`
	var inactivated int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) `+absent+` AND o.active`, cur, im.gen).Scan(&inactivated); err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: count absent: %w", err)
	}
	// Those already inactive keep the time they were first found missing.
	if _, err := tx.ExecContext(ctx, `INSERT INTO directory_practitioners
		(generation, idnat, rpps, civility, last_name, first_name, professions, activities, active, updated_at)
		SELECT ?, o.idnat, o.rpps, o.civility, o.last_name, o.first_name, o.professions, o.activities, 0,
			CASE WHEN o.active THEN ? ELSE o.updated_at END `+absent,
		im.gen, now, cur, im.gen); err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: carry over absent: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE directory_meta
		SET current_generation = ?, building_generation = 0, imported_at = ?, revision = revision + 1 WHERE id = 1`, im.gen, now); err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: switch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: directory commit: %w", err)
	}
	im.done = true
	// The switch is done; the previous generation is only garbage now, and
	// if deleting it fails the next import deletes it instead.
	_ = im.s.cleanDirectory(ctx)
	return inactivated, nil
}

func (im *directoryImport) Abort(ctx context.Context) error {
	if im.done {
		return nil
	}
	im.done = true
	// Only release the generation if it is still ours: a newer import may
	// have taken over, and its building_generation must stay.
	if _, err := im.s.w.ExecContext(ctx, `UPDATE directory_meta SET building_generation = 0
		WHERE id = 1 AND building_generation = ?`, im.gen); err != nil {
		return fmt.Errorf("sqlite: directory abort: %w", err)
	}
	if err := im.s.cleanDirectory(ctx); err != nil {
		return fmt.Errorf("sqlite: directory abort: %w", err)
	}
	return nil
}

func (s *Store) DirectoryPractitioners(ctx context.Context, fn func(store.DirectoryRecord) error) error {
	// One statement reads one snapshot, and the generation it picks is the
	// one current when it starts, so a commit during the read is not seen.
	rows, err := s.r.QueryContext(ctx, `SELECT p.idnat, p.rpps, p.civility, p.last_name, p.first_name,
		p.professions, p.activities, p.active, p.updated_at
		FROM directory_meta m JOIN directory_practitioners p ON p.generation = m.current_generation
		WHERE m.id = 1 ORDER BY p.idnat`)
	if err != nil {
		return fmt.Errorf("sqlite: directory read: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r          store.DirectoryRecord
			prof, acts string
			updated    int64
		)
		if err := rows.Scan(&r.IDNat, &r.RPPS, &r.Civility, &r.LastName, &r.FirstName, &prof, &acts, &r.Active, &updated); err != nil {
			return fmt.Errorf("sqlite: directory read: %w", err)
		}
		r.Professions, r.Activities, r.UpdatedAt = json.RawMessage(prof), json.RawMessage(acts), fromMS(updated)
		if err := fn(r); err != nil {
			return fmt.Errorf("sqlite: directory read stopped at %s: %w", r.IDNat, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: directory read: %w", err)
	}
	return nil
}

func (s *Store) DirectoryStats(ctx context.Context) (store.DirectoryStats, error) {
	var (
		st       store.DirectoryStats
		imported int64
		total    int
	)
	err := s.r.QueryRowContext(ctx, `SELECT m.current_generation, m.imported_at,
		count(p.idnat), coalesce(sum(p.active), 0)
		FROM directory_meta m LEFT JOIN directory_practitioners p ON p.generation = m.current_generation
		WHERE m.id = 1 GROUP BY m.id`).Scan(&st.Generation, &imported, &total, &st.Active)
	if err != nil {
		return st, fmt.Errorf("sqlite: directory stats: %w", err)
	}
	st.Inactive = total - st.Active
	if imported != 0 {
		st.ImportedAt = fromMS(imported)
	}
	return st, nil
}
