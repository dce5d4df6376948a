package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStatements bounds the cache: queries built with a variable
// number of placeholders would otherwise grow it without end.
const maxCachedStatements = 256

// cachedReader runs reads through prepared statements kept per query text.
// For the small indexed queries of /sync, SQLite spends more time parsing
// and planning the SQL than executing it; database/sql re-prepares a
// cached *sql.Stmt on each pool connection as needed.
type cachedReader struct {
	db *sql.DB

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func newCachedReader(db *sql.DB) *cachedReader {
	return &cachedReader{db: db, stmts: map[string]*sql.Stmt{}}
}

func (c *cachedReader) stmt(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stmts[query]; ok {
		return st
	}
	if len(c.stmts) >= maxCachedStatements {
		return nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the unprepared path reports the error
	}
	c.stmts[query] = st
	return st
}

func (c *cachedReader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.db.QueryContext(ctx, query, args...)
}

func (c *cachedReader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.db.QueryRowContext(ctx, query, args...)
}

func (c *cachedReader) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		_ = st.Close()
	}
	clear(c.stmts)
}
