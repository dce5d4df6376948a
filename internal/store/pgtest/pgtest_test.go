package pgtest

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestWithDatabase(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://u:p@h:5/old?sslmode=disable", "postgres://u:p@h:5/new?sslmode=disable"},
		{"postgresql://h/", "postgresql://h/new"},
		{"host=h dbname=old", "host=h dbname=old dbname=new"},
	} {
		got, err := withDatabase(c.in, "new")
		if err != nil || got != c.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func currentDatabase(t *testing.T, u string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), u)
	if err != nil {
		t.Fatalf("connect %s: %v", u, err)
	}
	defer conn.Close(context.Background())
	var name string
	var tables int
	if err := conn.QueryRow(t.Context(), `SELECT current_database(),
		(SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public')`).Scan(&name, &tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("database %s is not empty: %d tables", name, tables)
	}
	return name
}

func databaseExists(t *testing.T, admin, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestURL(t *testing.T) {
	var a, b string
	t.Run("a", func(t *testing.T) {
		a = currentDatabase(t, URL(t))
		b = currentDatabase(t, URL(t))
	})
	if a == b || !strings.HasPrefix(a, "eimis_test_") {
		t.Errorf("URL gave databases %q and %q, want two distinct eimis_test_ ones", a, b)
	}
	admin, err := adminURL()
	if err != nil {
		t.Fatal(err)
	}
	if databaseExists(t, admin, a) || databaseExists(t, admin, b) {
		t.Errorf("databases not dropped when their test ended")
	}
	var fsync, syncCommit string
	conn, err := pgx.Connect(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(t.Context(), `SELECT current_setting('fsync'), current_setting('synchronous_commit')`).
		Scan(&fsync, &syncCommit); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(EnvURL) == "" && (fsync != "on" || syncCommit != "on") {
		t.Errorf("fsync = %s, synchronous_commit = %s; the test server must commit durably", fsync, syncCommit)
	}
}

func TestStartServerAndEnvURL(t *testing.T) {
	srv, stop, err := StartServer()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	defer stop()
	if name := currentDatabase(t, srv); name != "eimis" {
		t.Errorf("StartServer database = %q, want eimis", name)
	}

	// EIMIS_TEST_POSTGRES_URL, in both URL and keyword/value form.
	u, err := url.Parse(srv)
	if err != nil {
		t.Fatal(err)
	}
	kv := "host=" + u.Hostname() + " port=" + u.Port() + " user=postgres dbname=eimis sslmode=disable"
	for _, env := range []string{srv, kv} {
		t.Setenv(EnvURL, env)
		var name string
		t.Run("env", func(t *testing.T) {
			dbURL := URL(t)
			name = currentDatabase(t, dbURL)
			if !strings.Contains(dbURL, u.Port()) {
				t.Errorf("URL %q is not on the server of %s", dbURL, EnvURL)
			}
		})
		if !strings.HasPrefix(name, "eimis_test_") || databaseExists(t, srv, name) {
			t.Errorf("env %q: database %q not created or not dropped", env, name)
		}
	}

	stop()
	stop() // idempotent
	if conn, err := pgx.Connect(t.Context(), srv); err == nil {
		conn.Close(context.Background())
		t.Errorf("server still accepts connections after stop")
	}
}
