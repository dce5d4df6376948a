// Package pgtest gives tests PostgreSQL databases.
//
// With EIMIS_TEST_POSTGRES_URL set, each URL call creates a uniquely named
// database on that server (the URL must allow CREATE DATABASE). Otherwise
// the first URL call of a test binary starts one throwaway server from the
// Debian PostgreSQL binaries (initdb and pg_ctl on PATH or under
// /usr/lib/postgresql/*/bin) and every call creates a database on it.
//
// A test package using URL should stop that server when its tests end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Without that, the server still goes away when the test binary exits, but
// asynchronously: a watchdog process waits for the binary's death.
//
// When no server can be had, URL skips the test, except under CI=true,
// where PostgreSQL tests must run and URL fails the test instead.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable pointing the tests at an existing server.
const EnvURL = "EIMIS_TEST_POSTGRES_URL"

var (
	sharedOnce sync.Once
	sharedURL  string
	sharedStop func()
	sharedErr  error
	sharedMu   sync.Mutex // guards sharedStop against Main racing a late start
)

// Main runs m and then stops the server URL may have started, before
// exiting with m's result. Use it as (or from) a package's TestMain.
func Main(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	if sharedStop != nil {
		sharedStop()
		sharedStop = nil
	}
	sharedMu.Unlock()
	os.Exit(code)
}

// URL returns the URL of a new, empty database, dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	admin, err := adminURL()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: PostgreSQL is required under CI: %v", err)
		}
		t.Skipf("pgtest: no PostgreSQL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL, name, err := createDatabase(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dropDatabase(ctx, admin, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return dbURL
}

func adminURL() (string, error) {
	if u := os.Getenv(EnvURL); u != "" {
		return u, nil
	}
	sharedOnce.Do(func() {
		u, stop, err := startServer()
		sharedMu.Lock()
		sharedURL, sharedStop, sharedErr = u, stop, err
		sharedMu.Unlock()
	})
	return sharedURL, sharedErr
}

// StartServer starts a private PostgreSQL server, for tests that need a
// whole server rather than one database (several hub processes sharing a
// database, restarts). url names an empty database "eimis" on it, as
// superuser "postgres" (trust authentication over 127.0.0.1). stop shuts
// the server down and deletes its files; it is safe to call more than once.
// If the caller dies without calling stop, the server is stopped anyway.
func StartServer() (url string, stop func(), err error) {
	admin, stop, err := startServer()
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := execAdmin(ctx, admin, `CREATE DATABASE eimis`); err != nil {
		stop()
		return "", nil, err
	}
	u, err := withDatabase(admin, "eimis")
	if err != nil {
		stop()
		return "", nil, err
	}
	return u, stop, nil
}

func randomName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "eimis_test_" + hex.EncodeToString(b[:])
}

// withDatabase points a libpq URL or keyword/value string at database name.
func withDatabase(connString, name string) (string, error) {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("pgtest: parse %s: %w", EnvURL, err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	// In keyword/value form a repeated keyword overrides the earlier one.
	return connString + " dbname=" + name, nil
}

func execAdmin(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: %s: %w", sql, err)
	}
	return nil
}

func createDatabase(ctx context.Context, admin string) (dbURL, name string, err error) {
	name = randomName()
	if err := execAdmin(ctx, admin, `CREATE DATABASE `+name); err != nil {
		return "", "", err
	}
	dbURL, err = withDatabase(admin, name)
	if err != nil {
		return "", "", err
	}
	return dbURL, name, nil
}

func dropDatabase(ctx context.Context, admin, name string) error {
	// FORCE: a test that leaked a connection must not keep its database.
	return execAdmin(ctx, admin, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
}

// binDir finds the directory holding initdb and pg_ctl, preferring PATH,
// then the newest Debian versioned directory.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found on PATH nor under /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// runAs describes who runs the server. PostgreSQL refuses to run as root,
// so as root everything runs as the postgres user (or nobody).
type runAs struct {
	cred *syscall.Credential // nil: as ourselves
	uid  int
	gid  int
}

func serverUser() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: -1, gid: -1}, nil
	}
	var lastErr error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			lastErr = err
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			lastErr = fmt.Errorf("user %s has non-numeric ids", name)
			continue
		}
		return runAs{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
	}
	return runAs{}, fmt.Errorf("running as root and no unprivileged user to run PostgreSQL as: %w", lastErr)
}

// childEnv drops PG* variables, which would redirect pg_ctl and initdb.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

func (r runAs) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = childEnv()
	// Own process group: a ^C meant for the test must not reach the
	// server or its watchdog before the watchdog has cleaned up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred, Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer initdbs and starts a server, returning a superuser URL for
// its "postgres" database.
func startServer() (adminURL string, stop func(), err error) {
	bin, err := binDir()
	if err != nil {
		return "", nil, err
	}
	who, err := serverUser()
	if err != nil {
		return "", nil, err
	}
	base := os.TempDir()
	if who.cred != nil {
		// The server user must be able to reach the directory; root's
		// TMPDIR might sit somewhere only root can enter.
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "eimis-pgtest-")
	if err != nil {
		return "", nil, fmt.Errorf("pgtest: %w", err)
	}
	if who.cred != nil {
		if err := os.Chown(dir, who.uid, who.gid); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	logFile := filepath.Join(dir, "server.log")
	pgCtl := filepath.Join(bin, "pg_ctl")

	// The watchdog owns shutdown and cleanup. It waits for EOF on its
	// stdin, which comes when stop closes the pipe or when this process
	// dies for any reason, so the server never outlives its test binary.
	stop, err = startWatchdog(who, pgCtl, data, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	fail := func(err error) (string, func(), error) {
		if b, rerr := os.ReadFile(logFile); rerr == nil && len(b) > 0 {
			err = fmt.Errorf("%w\nserver log:\n%s", err, tail(b, 2000))
		}
		stop()
		return "", nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// --no-sync only skips initdb's own final flush of a directory that
	// dies with the test; the running server keeps fsync on.
	initdb := who.command(ctx, filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pgtest: initdb: %w\n%s", err, out))
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		// The settings go in postgresql.auto.conf, which is read last
		// and rewritten on each attempt; fsync and synchronous_commit
		// are stated so the tests exercise durable commits.
		conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"+
			"fsync = on\nsynchronous_commit = on\nmax_connections = 300\n", port, dir)
		confPath := filepath.Join(data, "postgresql.auto.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			return fail(fmt.Errorf("pgtest: %w", err))
		}
		if who.cred != nil {
			if err := os.Chown(confPath, who.uid, who.gid); err != nil {
				return fail(fmt.Errorf("pgtest: %w", err))
			}
		}
		start := who.command(ctx, pgCtl, "-D", data, "-l", logFile, "-w", "-t", "60", "start")
		out, err := start.CombinedOutput()
		if err != nil {
			lastErr = fmt.Errorf("pgtest: pg_ctl start: %w\n%s", err, out)
			continue
		}
		u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		if err := waitReady(ctx, u); err != nil {
			return fail(err)
		}
		return u, stop, nil
	}
	return fail(lastErr)
}

func startWatchdog(who runAs, pgCtl, data, dir string) (stop func(), err error) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	script := `cat >/dev/null; if [ -f "$1/postmaster.pid" ]; then "$0" -D "$1" -m fast -w -t 60 stop >/dev/null 2>&1; fi; rm -rf "$2"`
	// Not tied to a context: it must outlive anything but its stdin.
	cmd := exec.Command(sh, "-c", script, pgCtl, data, dir)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: who.cred, Setpgid: true}
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("pgtest: start watchdog: %w", err)
	}
	pr.Close()
	var once sync.Once
	return func() {
		once.Do(func() {
			pw.Close()
			_ = cmd.Wait()
		})
	}, nil
}

func waitReady(ctx context.Context, u string) error {
	var err error
	for {
		var conn *pgx.Conn
		if conn, err = pgx.Connect(ctx, u); err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgtest: server not ready: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
