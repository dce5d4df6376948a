// Package postgres is the production store dialect, on pgx.
//
// Several hub processes may share one database. What keeps a single integer
// a correct /sync token among them is the global stream lock: every
// transaction that allocates a position first takes one transaction-scoped
// advisory lock, and only then draws from the stream_pos sequence. Writers
// of positions are therefore serialized across all processes and commit in
// position order.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/schemas"
)

// StreamLockID is the pg_advisory_xact_lock key of the global stream lock
// ("EIMIS" in ASCII). Exported so operational tooling can see who holds it
// in pg_locks.
const StreamLockID int64 = 0x45494d4953

// flushEvery bounds how many events an EventTx buffers before sending them,
// so a huge WriteEvents does not build one unbounded batch.
const flushEvery = 1000

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	// stream admits one position writer of this process at a time to the
	// advisory lock. Without it, writers queued on the lock would each hold
	// a pooled connection while waiting and could starve readers of the
	// pool; with it they wait here, holding nothing.
	stream chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open connects to url (a libpq URL or keyword/value string) and applies
// pending migrations. Several processes may call Open on one database at
// once: goose serializes them with a session advisory lock, and the losers
// find nothing left to apply.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, stream: make(chan struct{}, 1)}, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(schemas.Migrations, "migrations/postgres")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	// Retry every second (not goose's default five) so a hub starting next
	// to another one is not held up longer than the migration itself; give
	// up after ten minutes, which only a stuck migration would need.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func pgCode(err error) (code, constraint string) {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code, e.ConstraintName
	}
	return "", ""
}

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

func nowIfZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
