package trustlist

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

var t0 = time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)

type clock struct{ now atomic.Pointer[time.Time] }

func (c *clock) Now() time.Time   { return *c.now.Load() }
func (c *clock) Set(t time.Time)  { c.now.Store(&t) }
func newClock(t time.Time) *clock { c := &clock{}; c.Set(t); return c }
func mustKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := GenerateAuthorityKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, key ed25519.PrivateKey, l List) []byte {
	t.Helper()
	s, err := Sign(l, key, t0)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

// registry is a real operator registry over SQLite with the operators
// the tests use: acme (active, runs a.test), beta (runs b.test), and
// gamma (runs nothing the list names).
func registry(t *testing.T) *operators.Registry {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "eimis.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := operators.New(st, nil)
	for _, o := range []operators.Operator{
		{ID: "acme", Name: "Acme", ServerNames: []string{"a.test"}, Contact: "ops@acme.test"},
		{ID: "beta", Name: "Beta", ServerNames: []string{"b.test"}, Contact: "ops@beta.test"},
		{ID: "gamma", Name: "Gamma", ServerNames: []string{"g.test"}, Contact: "ops@gamma.test"},
	} {
		if _, err := r.Add(ctx, o, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func rpps(stem string) string {
	for d := 0; d <= 9; d++ {
		if s := stem + strconv.Itoa(d); directory.ValidRPPS(s) {
			return s
		}
	}
	panic("no check digit")
}

func practitioners(active, inactive string) *policy.Engine {
	b := directory.NewIndexBuilder()
	b.Add(directory.Practitioner{IDNat: active, LastName: "Martin", FirstName: "Anne", Active: true,
		Professions: []directory.Profession{{Code: "10", Label: "Médecin"}}})
	b.Add(directory.Practitioner{IDNat: inactive, LastName: "Petit", FirstName: "Luc", Active: false,
		Professions: []directory.Profession{{Code: "10", Label: "Médecin"}}})
	var a directory.Atomic
	a.Swap(b.Build())
	return policy.New("hub.test", &a, nil)
}

func baseList() List {
	return List{
		Expires: t0.Add(24 * time.Hour),
		Servers: []Server{
			{Name: "a.test", Operator: "acme", Status: Active},
			{Name: "a2.test", Operator: "acme", Status: Active, Users: ServerVouched},
			{Name: "b.test", Operator: "beta", Status: Suspended},
			{Name: "r.test", Operator: "beta", Status: Revoked},
			{Name: "x.test", Operator: "nobody", Status: Active},
			{Name: "g.test", Operator: "acme", Status: Active},
			{Name: "127.0.0.1:8448", Operator: "acme", Status: Active},
		},
	}
}

func watcher(t *testing.T, cfg Config) *Watcher {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func codeOf(err error) string {
	if r, ok := operators.AsRefusal(err); ok {
		return string(r.Code)
	}
	if r, ok := policy.AsRefusal(err); ok {
		return string(r.Code)
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

func TestServerAllowed(t *testing.T) {
	key := mustKey(t)
	file := filepath.Join(t.TempDir(), "list.jws")
	if err := os.WriteFile(file, sign(t, key, baseList()), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := registry(t)
	clk := newClock(t0)
	w := watcher(t, Config{File: file, AuthorityKey: key.Public(), Operators: reg, Now: clk.Now, Grace: time.Hour})
	if err := w.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Suspend(context.Background(), "beta", "audit pending", "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ server, want string }{
		{"a.test", ""},
		{"127.0.0.1:8448", ""},
		{"a2.test", ""}, // not in the registry's server names: the list's operator is active
		{"unlisted.test", string(operators.CodeServerNotListed)},
		{"b.test", string(operators.CodeServerSuspended)},
		{"r.test", string(operators.CodeServerRevoked)},
		{"x.test", string(operators.CodeUnknownOperator)},
		// The registry gives g.test to gamma, the list to acme: refused.
		{"g.test", string(operators.CodeOperatorMismatch)},
	} {
		if got := codeOf(w.ServerAllowed(tc.server)); got != tc.want {
			t.Errorf("ServerAllowed(%s) = %q, want %q", tc.server, got, tc.want)
		}
	}
	// Active on the list, suspended in the registry: the more restrictive
	// applies, at once (the registry is read on every check).
	l := baseList()
	l.Servers = append(l.Servers, Server{Name: "b2.test", Operator: "beta", Status: Active})
	l.Version = t0.Unix() + 1 // above the first list's default (its issue time)
	if err := os.WriteFile(file, sign(t, key, l), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := codeOf(w.ServerAllowed("b2.test")); got != string(operators.CodeOperatorSuspended) {
		t.Errorf("suspended operator's server: %q", got)
	}
	if _, err := reg.Revoke(context.Background(), "acme", "gone", "test"); err != nil {
		t.Fatal(err)
	}
	if got := codeOf(w.ServerAllowed("a.test")); got != string(operators.CodeOperatorRevoked) {
		t.Errorf("revoked operator's server: %q", got)
	}
}

func TestVerifyRefuses(t *testing.T) {
	key, other := mustKey(t), mustKey(t)
	good := sign(t, key, baseList())
	parts := strings.Split(string(good), ".")
	unsigned := parts[0] + "." + parts[1] + "."
	tampered := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a jws")},
		{"yaml source", []byte("servers: []\nexpires: 2030-01-01T00:00:00Z\n")},
		{"unsigned", []byte(unsigned)},
		{"tampered", []byte(tampered)},
		{"wrong key", sign(t, other, baseList())},
	} {
		if _, err := Verify(tc.data, key.Public()); err == nil {
			t.Errorf("%s: verified", tc.name)
		}
	}
	if l, err := Verify(good, key.Public()); err != nil || len(l.Servers) != len(baseList().Servers) {
		t.Fatalf("good list: %v", err)
	}
}

// An invalid list never replaces the one in force; the one in force
// lasts until its expiry plus the grace; then everything is refused and
// readiness says why.
func TestFailClosed(t *testing.T) {
	key, other := mustKey(t), mustKey(t)
	file := filepath.Join(t.TempDir(), "list.jws")
	clk := newClock(t0)
	w := watcher(t, Config{File: file, AuthorityKey: key.Public(), Operators: registry(t), Now: clk.Now, Grace: time.Hour})
	ctx := context.Background()

	// Nothing loaded yet: refused, not ready.
	if err := w.Refresh(ctx); err == nil {
		t.Fatal("refresh of a missing file succeeded")
	}
	if got := codeOf(w.ServerAllowed("a.test")); got != string(operators.CodeListUnavailable) {
		t.Fatalf("before any list: %q", got)
	}
	if err := w.Ping(ctx); err == nil || isDegraded(err) {
		t.Fatalf("readiness before any list: %v", err)
	}

	os.WriteFile(file, sign(t, key, baseList()), 0o600)
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.ServerAllowed("a.test"); err != nil {
		t.Fatal(err)
	}
	if err := w.Ping(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}

	// A list signed by another key, then garbage: refused, the old one stays.
	l := baseList()
	l.Version = 1 << 40
	l.Servers = nil
	for _, bad := range [][]byte{sign(t, other, l), []byte("garbage")} {
		os.WriteFile(file, bad, 0o600)
		if err := w.Refresh(ctx); !errors.Is(err, ErrSignature) {
			t.Fatalf("bad list accepted: %v", err)
		}
		if err := w.ServerAllowed("a.test"); err != nil {
			t.Fatalf("the last valid list was dropped: %v", err)
		}
		if err := w.Ping(ctx); !isDegraded(err) {
			t.Fatalf("readiness after a failed refresh: %v", err)
		}
	}

	// Expired, within grace: still in force, degraded.
	clk.Set(t0.Add(24*time.Hour + 30*time.Minute))
	if err := w.ServerAllowed("a.test"); err != nil {
		t.Fatalf("in grace: %v", err)
	}
	if err := w.Ping(ctx); !isDegraded(err) || !strings.Contains(err.Error(), "grace") {
		t.Fatalf("readiness in grace: %v", err)
	}
	// Past the grace: refused, not ready, and readiness says why.
	clk.Set(t0.Add(24*time.Hour + 61*time.Minute))
	if got := codeOf(w.ServerAllowed("a.test")); got != string(operators.CodeListUnavailable) {
		t.Fatalf("past grace: %q", got)
	}
	if err := w.Ping(ctx); err == nil || isDegraded(err) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("readiness past grace: %v", err)
	}
}

func isDegraded(err error) bool {
	var d interface{ Degraded() bool }
	return errors.As(err, &d) && d.Degraded()
}

// A new list renamed over the old file takes effect at the next refresh;
// an older version (a replay) does not.
func TestFileReplacedByRename(t *testing.T) {
	key := mustKey(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "list.jws")
	replace := func(l List) {
		tmp := filepath.Join(dir, "new.jws")
		if err := os.WriteFile(tmp, sign(t, key, l), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	v1 := baseList()
	v1.Version = 1
	replace(v1)
	w := watcher(t, Config{File: file, AuthorityKey: key.Public(), Operators: registry(t), Now: newClock(t0).Now, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	changed := make(chan List, 4)
	w.OnChange(func(l List) { changed <- l })
	go w.Run(ctx)

	v2 := baseList()
	v2.Version = 2
	v2.Servers[0].Status = Suspended // a.test
	replace(v2)
	select {
	case l := <-changed:
		if l.Version != 2 {
			t.Fatalf("version %d in force", l.Version)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the replaced file was not picked up")
	}
	if got := codeOf(w.ServerAllowed("a.test")); got != string(operators.CodeServerSuspended) {
		t.Fatalf("after replacement: %q", got)
	}
	// A replay of v1 is ignored.
	replace(v1)
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if l, _ := w.Current(); l.Version != 2 {
		t.Fatalf("replayed v1 took effect: version %d", l.Version)
	}
}

func TestURLFetch(t *testing.T) {
	key := mustKey(t)
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := body.Load()
		if b == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(*b)
	}))
	defer srv.Close()
	cache := filepath.Join(t.TempDir(), "cache.jws")
	cfg := Config{URL: srv.URL, CacheFile: cache, AuthorityKey: key.Public(), Operators: registry(t), Now: newClock(t0).Now}
	w := watcher(t, cfg)
	ctx := context.Background()
	if err := w.Refresh(ctx); err == nil {
		t.Fatal("refresh from a down URL succeeded")
	}
	good := sign(t, key, baseList())
	body.Store(&good)
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.ServerAllowed("a.test"); err != nil {
		t.Fatal(err)
	}
	// A restart while the URL is down uses the cached copy.
	body.Store(nil)
	w2 := watcher(t, cfg)
	_ = w2.Refresh(ctx)
	if err := w2.ServerAllowed("a.test"); err != nil {
		t.Fatalf("cached list not used: %v", err)
	}
}

func TestUserAllowed(t *testing.T) {
	key := mustKey(t)
	file := filepath.Join(t.TempDir(), "list.jws")
	os.WriteFile(file, sign(t, key, baseList()), 0o600)
	active, inactive := "8"+rpps("1000000001"), "8"+rpps("1000000003")
	w := watcher(t, Config{File: file, AuthorityKey: key.Public(), Operators: registry(t), Now: newClock(t0).Now,
		Practitioners: practitioners(active, inactive)})
	if err := w.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ user, want string }{
		{"@" + active + ":a.test", ""},
		{"@" + inactive + ":a.test", string(policy.InactivePractitioner)},
		{"@8" + rpps("1000000009") + ":a.test", string(policy.NotInDirectory)},
		{"@alice:a.test", string(policy.NotAPractitionerID)},
		{"@alice:a2.test", ""}, // server_vouched
		{"@" + active + ":b.test", string(operators.CodeServerSuspended)},
		{"@" + active + ":nowhere.test", string(operators.CodeServerNotListed)},
		{"not a user id", string(policy.NotAPractitionerID)},
	} {
		if got := codeOf(w.UserAllowed(context.Background(), tc.user)); got != tc.want {
			t.Errorf("UserAllowed(%s) = %q, want %q", tc.user, got, tc.want)
		}
	}
}

func TestParseYAML(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string // want: substring of the error, "" for valid
	}{
		{"valid", "expires: 2030-01-01T00:00:00Z\nservers:\n  - {name: a.test, operator: acme, status: active}\n", ""},
		{"default user rule", "expires: 2030-01-01T00:00:00Z\nservers:\n  - {name: a.test, operator: acme, status: active, users: server_vouched}\n", ""},
		{"no expiry", "servers:\n  - {name: a.test, operator: acme, status: active}\n", "expires"},
		{"bad status", "expires: 2030-01-01T00:00:00Z\nservers:\n  - {name: a.test, operator: acme, status: active}\n  - {name: b.test, operator: acme, status: suspend}\n", "line 4"},
		{"bad rule", "expires: 2030-01-01T00:00:00Z\nservers:\n  - {name: a.test, operator: acme, status: active, users: anyone}\n", "users"},
		{"unknown key", "expires: 2030-01-01T00:00:00Z\nservres: []\n", "servres"},
		{"duplicate", "expires: 2030-01-01T00:00:00Z\nservers:\n  - {name: a.test, operator: acme, status: active}\n  - {name: a.test, operator: acme, status: active}\n", "twice"},
		{"bad name", "expires: 2030-01-01T00:00:00Z\nservers:\n  - {name: 'a test', operator: acme, status: active}\n", "name"},
		{"no operator", "expires: 2030-01-01T00:00:00Z\nservers:\n  - {name: a.test, status: active}\n", "operator"},
	} {
		l, err := ParseYAML([]byte(tc.src))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one about %q", tc.name, err, tc.want)
		case tc.want == "" && l.Servers[0].Users == "":
			t.Errorf("%s: no default user rule", tc.name)
		}
	}
}

func TestPublicKeyForms(t *testing.T) {
	key := mustKey(t)
	inline, err := EncodePublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "authority.pub")
	os.WriteFile(file, []byte(inline+"\n"), 0o600)
	for _, v := range []string{inline, file} {
		pub, err := ParsePublicKey(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if _, err := Verify(sign(t, key, baseList()), pub); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
	}
	if _, err := ParsePublicKey("ed25519:short"); err == nil {
		t.Fatal("short key accepted")
	}
	pemKey, _ := EncodePrivateKey(key)
	if k, err := ParsePrivateKey(pemKey); err != nil || !key.Equal(k) {
		t.Fatalf("private key round trip: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	key, _ := GenerateAuthorityKey()
	good, _ := Sign(baseList(), key, t0)
	f.Add([]byte(good))
	f.Add([]byte("a.b.c"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if l, err := Verify(data, key.Public()); err == nil {
			if err := l.Validate(); err != nil {
				t.Fatalf("verified an invalid list: %v", err)
			}
		}
	})
}

func FuzzParseYAML(f *testing.F) {
	f.Add([]byte("expires: 2030-01-01T00:00:00Z\nservers:\n  - {name: a.test, operator: acme, status: active}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if l, err := ParseYAML(data); err == nil {
			for _, s := range l.Servers {
				if CheckServerName(s.Name) != nil {
					t.Fatalf("accepted server %q", s.Name)
				}
			}
		}
	})
}

func TestParseYAMLExample(t *testing.T) {
	data, err := os.ReadFile("testdata/list.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	if l.Version != 7 || len(l.Servers) != 4 || l.Servers[0].Users != Directory || l.Servers[1].Users != ServerVouched ||
		l.Servers[3].Status != Revoked || l.Issued.IsZero() {
		t.Fatalf("%+v", l)
	}
}
