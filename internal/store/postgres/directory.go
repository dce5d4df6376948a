package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// Health directory.

var errImportDone = errors.New("postgres: directory import already committed or aborted")

var directoryColumns = []string{"generation", "idnat", "rpps", "civility", "last_name", "first_name",
	"professions", "activities", "active", "updated_at"}

func (s *Store) BeginDirectoryImport(ctx context.Context) (store.DirectoryImport, error) {
	var gen int64
	// Both assignments read the old last_generation, so they agree. The
	// row lock this takes waits for any Add or Commit in flight, which is
	// what fences the import being superseded.
	err := s.pool.QueryRow(ctx, `UPDATE directory_meta
		SET last_generation = last_generation + 1, building_generation = last_generation + 1
		WHERE id = 1 RETURNING building_generation`).Scan(&gen)
	if err != nil {
		return nil, fmt.Errorf("postgres: begin directory import: %w", err)
	}
	if err := s.cleanDirectory(ctx); err != nil {
		return nil, fmt.Errorf("postgres: begin directory import: %w", err)
	}
	return &directoryImport{s: s, gen: gen}, nil
}

// cleanDirectory deletes the rows of every generation that is neither
// current nor being built. Unlike SQLite, one statement is fine here: the
// delete blocks neither readers nor the hub's other writers, only a
// concurrent BeginDirectoryImport, which waits on the share lock.
func (s *Store) cleanDirectory(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("clean directory: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	var cur, bld int64
	if err := tx.QueryRow(ctx, `SELECT current_generation, building_generation FROM directory_meta
		WHERE id = 1 FOR SHARE`).Scan(&cur, &bld); err != nil {
		return fmt.Errorf("clean directory: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM directory_practitioners WHERE generation <> $1 AND generation <> $2`, cur, bld); err != nil {
		return fmt.Errorf("clean directory: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("clean directory: commit: %w", err)
	}
	return nil
}

type directoryImport struct {
	s    *Store
	gen  int64
	done bool
}

// claim checks, inside tx, that this import still owns the generation
// being built and returns the current one. lock is "SHARE" for Add (many
// batches may hold it) or "UPDATE" for Commit.
func (im *directoryImport) claim(ctx context.Context, tx pgx.Tx, lock string) (cur int64, err error) {
	var bld int64
	if err := tx.QueryRow(ctx, `SELECT current_generation, building_generation FROM directory_meta
		WHERE id = 1 FOR `+lock).Scan(&cur, &bld); err != nil {
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
	tx, err := im.s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: directory add: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if _, err := im.claim(ctx, tx, "SHARE"); err != nil {
		return fmt.Errorf("postgres: directory add: %w", err)
	}
	now := time.Now()
	src := pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
		r := &recs[i]
		return []any{im.gen, r.IDNat, r.RPPS, r.Civility, r.LastName, r.FirstName,
			jsonText(r.Professions), jsonText(r.Activities), r.Active, now}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"directory_practitioners"}, directoryColumns, src); err != nil {
		if code, _ := pgCode(err); code == uniqueViolation {
			return fmt.Errorf("postgres: directory add: %w: %w", store.ErrExists, err)
		}
		return fmt.Errorf("postgres: directory add: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: directory add: commit: %w", err)
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
	tx, err := im.s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: directory commit: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	cur, err := im.claim(ctx, tx, "UPDATE")
	if err != nil {
		return 0, fmt.Errorf("postgres: directory commit: %w", err)
	}
	now := time.Now()
	// Those already inactive keep the time they were first found missing.
	var inactivated int
	err = tx.QueryRow(ctx, `WITH absent AS (
			SELECT * FROM directory_practitioners o
			WHERE o.generation = $3 AND NOT EXISTS (
				SELECT 1 FROM directory_practitioners n WHERE n.generation = $1 AND n.idnat = o.idnat)),
		carried AS (
			INSERT INTO directory_practitioners
				(generation, idnat, rpps, civility, last_name, first_name, professions, activities, active, updated_at)
			SELECT $1, idnat, rpps, civility, last_name, first_name, professions, activities, false,
				CASE WHEN active THEN $2 ELSE updated_at END
			FROM absent)
		SELECT count(*) FILTER (WHERE active) FROM absent`, im.gen, now, cur).Scan(&inactivated)
	if err != nil {
		return 0, fmt.Errorf("postgres: directory commit: carry over absent: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE directory_meta
		SET current_generation = $1, building_generation = 0, imported_at = $2, revision = revision + 1 WHERE id = 1`, im.gen, now); err != nil {
		return 0, fmt.Errorf("postgres: directory commit: switch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("postgres: directory commit: %w", err)
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
	if _, err := im.s.pool.Exec(ctx, `UPDATE directory_meta SET building_generation = 0
		WHERE id = 1 AND building_generation = $1`, im.gen); err != nil {
		return fmt.Errorf("postgres: directory abort: %w", err)
	}
	if err := im.s.cleanDirectory(ctx); err != nil {
		return fmt.Errorf("postgres: directory abort: %w", err)
	}
	return nil
}

func (s *Store) DirectoryPractitioners(ctx context.Context, fn func(store.DirectoryRecord) error) error {
	// One statement reads one snapshot, and the generation it picks is the
	// one current when it starts, so a commit during the read is not seen.
	rows, err := s.pool.Query(ctx, `SELECT p.idnat, p.rpps, p.civility, p.last_name, p.first_name,
		p.professions, p.activities, p.active, p.updated_at
		FROM directory_meta m JOIN directory_practitioners p ON p.generation = m.current_generation
		WHERE m.id = 1 ORDER BY p.idnat`)
	if err != nil {
		return fmt.Errorf("postgres: directory read: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r          store.DirectoryRecord
			prof, acts string
		)
		if err := rows.Scan(&r.IDNat, &r.RPPS, &r.Civility, &r.LastName, &r.FirstName, &prof, &acts, &r.Active, &r.UpdatedAt); err != nil {
			return fmt.Errorf("postgres: directory read: %w", err)
		}
		r.Professions, r.Activities = json.RawMessage(prof), json.RawMessage(acts)
		if err := fn(r); err != nil {
			return fmt.Errorf("postgres: directory read stopped at %s: %w", r.IDNat, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: directory read: %w", err)
	}
	return nil
}

func (s *Store) DirectoryStats(ctx context.Context) (store.DirectoryStats, error) {
	var (
		st       store.DirectoryStats
		imported *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT m.current_generation, m.imported_at,
		count(*) FILTER (WHERE p.active), count(*) FILTER (WHERE NOT p.active)
		FROM directory_meta m LEFT JOIN directory_practitioners p ON p.generation = m.current_generation
		WHERE m.id = 1 GROUP BY m.id`).Scan(&st.Generation, &imported, &st.Active, &st.Inactive)
	if err != nil {
		return st, fmt.Errorf("postgres: directory stats: %w", err)
	}
	if imported != nil {
		st.ImportedAt = *imported
	}
	return st, nil
}
