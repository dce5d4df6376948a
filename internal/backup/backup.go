// Package backup writes and restores everything a hub needs to come back:
// the database (SQLite's online VACUUM INTO, or PostgreSQL's pg_dump), a
// JetStream snapshot of the event stream, the media files and the signing
// keys. The database is the source of truth for messages; the stream
// snapshot keeps the bridges', appservices' and audit trail's positions.
//
// A backup taken while instances run is consistent per part: the stream
// is snapshotted before the database, so every event in the stream is
// also in the database. Events accepted between the two are in the
// database (clients see them) but the restored stream will not deliver
// them to bridges again; stop the instances for an exact backup.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"database/sql"

	_ "modernc.org/sqlite" // the "sqlite" driver, for VACUUM INTO

	"github.com/eimis-hub/eimis/internal/config"
)

// File names inside a backup directory.
const (
	ManifestFile   = "manifest.json"
	SQLiteFile     = "eimis.db"
	PostgresFile   = "eimis.pgdump"
	StreamFile     = "nats-events.snapshot"
	StreamMetaFile = "nats-events.json"
	MediaDir       = "media"
	KeyFile        = "signing.key"
	OldKeysFile    = "signing.key.old"
)

// Manifest describes a backup, so restore can refuse a mismatch.
type Manifest struct {
	Format     int       `json:"format"`
	Created    time.Time `json:"created"`
	ServerName string    `json:"server_name"`
	Database   string    `json:"database"` // "sqlite" or "postgres"
	Stream     bool      `json:"stream"`
	// StreamMessages is the snapshotted stream's message count.
	StreamMessages uint64 `json:"stream_messages"`
	MediaFiles     int    `json:"media_files"`
}

const format = 1

// Streamer is the part of the bus a backup uses.
type Streamer interface {
	Snapshot(ctx context.Context, w io.Writer) ([]byte, error)
	Restore(ctx context.Context, meta []byte, r io.Reader) (uint64, error)
}

// Options tune where the database tools are found.
type Options struct {
	// PGBin is the directory holding pg_dump and pg_restore; empty looks
	// in PATH, then in /usr/lib/postgresql/*/bin.
	PGBin string
	// Force lets Restore overwrite an existing database file, signing key
	// or stream.
	Force bool
}

// Run writes a backup of cfg's hub into out, which must not exist or be
// empty. bus may be nil to leave the stream out (a documented choice: the
// database alone restores every message).
func Run(ctx context.Context, cfg config.Config, bus Streamer, out string, o Options) (Manifest, error) {
	m := Manifest{Format: format, Created: time.Now().UTC(), ServerName: cfg.ServerName}
	if err := emptyDir(out); err != nil {
		return m, err
	}
	if bus != nil {
		n, err := snapshotStream(ctx, bus, out)
		if err != nil {
			return m, err
		}
		m.Stream, m.StreamMessages = true, n
	}
	kind, dsn := cfg.DatabaseKind()
	m.Database = kind
	switch kind {
	case config.KindSQLite:
		if err := vacuumInto(ctx, strings.TrimPrefix(dsn, "file:"), filepath.Join(out, SQLiteFile)); err != nil {
			return m, err
		}
	case config.KindPostgres:
		pgDump, err := pgTool(o.PGBin, "pg_dump")
		if err != nil {
			return m, err
		}
		cmd := exec.CommandContext(ctx, pgDump, "--format=custom", "--no-owner", "--file", filepath.Join(out, PostgresFile), "--dbname", dsn)
		if b, err := cmd.CombinedOutput(); err != nil {
			return m, fmt.Errorf("backup: pg_dump: %w: %s", err, redact(string(b), dsn))
		}
	default:
		return m, fmt.Errorf("backup: unknown database kind %q", kind)
	}
	n, err := copyTree(cfg.MediaDir, filepath.Join(out, MediaDir), false)
	if err != nil {
		return m, fmt.Errorf("backup: media: %w", err)
	}
	m.MediaFiles = n
	if err := copyFile(cfg.SigningKeyPath, filepath.Join(out, KeyFile), 0o600, false); err != nil {
		return m, fmt.Errorf("backup: signing key: %w", err)
	}
	if err := copyFile(cfg.SigningKeyPath+".old", filepath.Join(out, OldKeysFile), 0o600, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("backup: old signing keys: %w", err)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(out, ManifestFile), append(b, '\n'), 0o600); err != nil {
		return m, fmt.Errorf("backup: manifest: %w", err)
	}
	return m, nil
}

func snapshotStream(ctx context.Context, bus Streamer, out string) (uint64, error) {
	f, err := os.OpenFile(filepath.Join(out, StreamFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	meta, err := bus.Snapshot(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("backup: stream: %w", err)
	}
	var st struct {
		State struct {
			Msgs uint64 `json:"messages"`
		} `json:"state"`
	}
	_ = json.Unmarshal(meta, &st)
	return st.State.Msgs, os.WriteFile(filepath.Join(out, StreamMetaFile), meta, 0o600)
}

// vacuumInto copies a live SQLite database consistently: VACUUM INTO reads
// one snapshot of the database (WAL readers never block the writer).
func vacuumInto(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: sqlite database: %w", err)
	}
	db, err := sql.Open("sqlite", src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("backup: sqlite: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("backup: sqlite VACUUM INTO: %w", err)
	}
	return nil
}

// ReadManifest reads and checks a backup directory's manifest.
func ReadManifest(in string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(in, ManifestFile))
	if err != nil {
		return m, fmt.Errorf("restore: %w (is %s a backup directory?)", err, in)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("restore: manifest: %w", err)
	}
	if m.Format != format {
		return m, fmt.Errorf("restore: backup format %d, this hub reads %d", m.Format, format)
	}
	return m, nil
}

// Restore puts the backup in into cfg's database, media directory, signing
// key path and, when bus is not nil, event stream. Every instance must be
// stopped. The database kind must match the backup's.
func Restore(ctx context.Context, cfg config.Config, bus Streamer, in string, o Options) (Manifest, error) {
	m, err := ReadManifest(in)
	if err != nil {
		return m, err
	}
	if m.ServerName != cfg.ServerName {
		return m, fmt.Errorf("restore: backup is of server %q, this config is for %q (changing the server name orphans every account)", m.ServerName, cfg.ServerName)
	}
	kind, dsn := cfg.DatabaseKind()
	if kind != m.Database {
		return m, fmt.Errorf("restore: backup holds a %s database, the config names %s", m.Database, kind)
	}
	// The signing key first: it is what other servers pin, so a clash
	// stops the restore before anything is changed.
	if err := restoreKey(cfg.SigningKeyPath, filepath.Join(in, KeyFile), o.Force); err != nil {
		return m, err
	}
	if err := copyFile(filepath.Join(in, OldKeysFile), cfg.SigningKeyPath+".old", 0o600, true); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("restore: old signing keys: %w", err)
	}
	switch kind {
	case config.KindSQLite:
		path := strings.TrimPrefix(dsn, "file:")
		if _, err := os.Stat(path); err == nil && !o.Force {
			return m, fmt.Errorf("restore: %s exists; stop the hub and pass --force to replace it", path)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
		for _, suffix := range []string{"-wal", "-shm"} {
			// A WAL left beside the restored file would be replayed into it.
			if err := os.Remove(path + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return m, fmt.Errorf("restore: %w", err)
			}
		}
		tmp := path + ".restore-tmp"
		if err := copyFile(filepath.Join(in, SQLiteFile), tmp, 0o600, true); err != nil {
			return m, fmt.Errorf("restore: sqlite: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return m, fmt.Errorf("restore: sqlite: %w", err)
		}
	case config.KindPostgres:
		pgRestore, err := pgTool(o.PGBin, "pg_restore")
		if err != nil {
			return m, err
		}
		cmd := exec.CommandContext(ctx, pgRestore, "--clean", "--if-exists", "--no-owner", "--single-transaction",
			"--exit-on-error", "--dbname", dsn, filepath.Join(in, PostgresFile))
		if b, err := cmd.CombinedOutput(); err != nil {
			return m, fmt.Errorf("restore: pg_restore: %w: %s", err, redact(string(b), dsn))
		}
	}
	if _, err := copyTree(filepath.Join(in, MediaDir), cfg.MediaDir, true); err != nil {
		return m, fmt.Errorf("restore: media: %w", err)
	}
	if bus != nil && m.Stream {
		meta, err := os.ReadFile(filepath.Join(in, StreamMetaFile))
		if err != nil {
			return m, fmt.Errorf("restore: stream: %w", err)
		}
		f, err := os.Open(filepath.Join(in, StreamFile))
		if err != nil {
			return m, fmt.Errorf("restore: stream: %w", err)
		}
		defer f.Close()
		n, err := bus.Restore(ctx, meta, f)
		if err != nil {
			return m, fmt.Errorf("restore: stream: %w", err)
		}
		if n != m.StreamMessages {
			return m, fmt.Errorf("restore: stream holds %d messages after restore, the backup had %d", n, m.StreamMessages)
		}
	}
	return m, nil
}

func restoreKey(dst, src string, force bool) error {
	want, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("restore: signing key: %w", err)
	}
	if have, err := os.ReadFile(dst); err == nil {
		if string(have) == string(want) {
			return nil
		}
		if !force {
			return fmt.Errorf("restore: %s holds a different signing key; pass --force to replace it (other servers pin the key the backup holds)", dst)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return copyFile(src, dst, 0o600, true)
}

// pgTool finds a PostgreSQL client program.
func pgTool(dir, name string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql/*/bin", name))
	if len(matches) > 0 {
		sort.Strings(matches)
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("%s not found (install the PostgreSQL client, or pass --pg-bin DIR); docs/operations.md#backups-and-restores gives the manual procedure", name)
}

// redact hides the database URL (it may hold a password) in tool output.
func redact(out, dsn string) string {
	return strings.TrimSpace(strings.ReplaceAll(out, dsn, "<database URL>"))
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o700)
	case err != nil:
		return fmt.Errorf("backup: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("backup: %s is not empty; choose a new directory", dir)
	}
	return nil
}

// copyTree copies the regular files under src into dst and returns how
// many it copied. A missing src is an empty tree.
func copyTree(src, dst string, overwrite bool) (int, error) {
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == src {
				return fs.SkipAll
			}
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := copyFile(p, target, 0o600, overwrite); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

func copyFile(src, dst string, mode os.FileMode, overwrite bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	out, err := os.OpenFile(dst, flags, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
