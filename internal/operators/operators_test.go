package operators

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// recorder collects OnChange calls; wait polls for them with a deadline.
type recorder struct {
	mu      sync.Mutex
	changes []Change
	signal  chan struct{}
}

func record(r *Registry) *recorder {
	rec := &recorder{signal: make(chan struct{}, 1)}
	r.OnChange(func(c Change) {
		rec.mu.Lock()
		rec.changes = append(rec.changes, c)
		rec.mu.Unlock()
		select {
		case rec.signal <- struct{}{}:
		default:
		}
	})
	return rec
}

func (rec *recorder) all() []Change {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.changes)
}

// waitFor waits until n changes have been recorded, failing after a
// generous deadline (only a broken Watch ever reaches it).
func (rec *recorder) waitFor(t *testing.T, n int) []Change {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if got := rec.all(); len(got) >= n {
			return got
		}
		select {
		case <-rec.signal:
		case <-deadline:
			t.Fatalf("waited for %d changes, got %+v", n, rec.all())
		}
	}
}

func acme() Operator {
	return Operator{ID: "acme", Name: "ACME Messenger", ServerNames: []string{"matrix.acme.example:8448", "acme.example"},
		Contact: "security@acme.example"}
}

func wantRefusal(t *testing.T, what string, op *Operator, err error, code Code, operator string) {
	t.Helper()
	ref, ok := AsRefusal(err)
	if !ok {
		t.Errorf("%s: got %v, %v; want refusal %s", what, op, err, code)
		return
	}
	if op != nil {
		t.Errorf("%s: refused, yet an operator was returned: %+v", what, op)
	}
	if ref.Code != code || ref.Operator != operator {
		t.Errorf("%s: refusal %s (operator %q), want %s (operator %q)", what, ref.Code, ref.Operator, code, operator)
	}
	if ref.Error() == "" {
		t.Errorf("%s: refusal without a message", what)
	}
}

func TestUnloadedRegistryDeniesEverything(t *testing.T) {
	st := openStore(t)
	r := New(st, nil)
	// An active operator in the store is still refused until Load: the
	// registry cannot know it yet.
	if _, err := r.Add(t.Context(), acme(), "test"); err != nil {
		t.Fatal(err)
	}
	if r.Loaded() {
		t.Fatal("Loaded before Load")
	}
	op, err := r.Check("acme")
	wantRefusal(t, "Check before load", op, err, CodeRegistryUnavailable, "")
	op, err = r.CheckServer("acme.example")
	wantRefusal(t, "CheckServer before load", op, err, CodeRegistryUnavailable, "")
	if ref, _ := AsRefusal(err); ref == nil || ref.Definite() {
		t.Error("an unloaded registry's refusal must not be definite")
	}
	if err := r.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if op, err := r.Check("acme"); err != nil || op.ID != "acme" {
		t.Fatalf("after load: %v, %v", op, err)
	}
}

func TestChecks(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	setup := New(st, nil)
	for _, o := range []Operator{
		acme(),
		{ID: "globex", Name: "Globex Santé", ServerNames: []string{"globex.example"}, Contact: "https://globex.example/contact"},
		{ID: "initech", Name: "Initech", ServerNames: []string{"initech.example", "[2001:db8::1]"}, Contact: "ops@initech.example"},
	} {
		if _, err := setup.Add(ctx, o, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := setup.Suspend(ctx, "globex", "unpaid", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Revoke(ctx, "initech", "breach", "test"); err != nil {
		t.Fatal(err)
	}
	// A fresh registry sees the stored state through Load alone.
	r := New(st, nil)
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		server   bool
		subject  string
		wantOp   string
		wantCode Code
		refused  string // operator named in the refusal
	}{
		{false, "acme", "acme", "", ""},
		{false, "globex", "", CodeOperatorSuspended, "globex"},
		{false, "initech", "", CodeOperatorRevoked, "initech"},
		{false, "nobody", "", CodeUnknownOperator, ""},
		{false, "", "", CodeUnknownOperator, ""},
		{false, "ACME", "", CodeUnknownOperator, ""},
		{true, "acme.example", "acme", "", ""},
		{true, "matrix.acme.example:8448", "acme", "", ""},
		{true, "matrix.acme.example", "", CodeUnknownServer, ""}, // listed only with its port
		{true, "ACME.example", "", CodeUnknownServer, ""},        // exact match only
		{true, "globex.example", "", CodeOperatorSuspended, "globex"},
		{true, "initech.example", "", CodeOperatorRevoked, "initech"},
		{true, "[2001:db8::1]", "", CodeOperatorRevoked, "initech"},
		{true, "evil.example", "", CodeUnknownServer, ""},
		{true, "acme", "", CodeUnknownServer, ""}, // an operator ID is not a server name
	} {
		var op *Operator
		var err error
		what := "Check(" + c.subject + ")"
		if c.server {
			what = "CheckServer(" + c.subject + ")"
			op, err = r.CheckServer(c.subject)
		} else {
			op, err = r.Check(c.subject)
		}
		if c.wantCode != "" {
			wantRefusal(t, what, op, err, c.wantCode, c.refused)
			if ref, _ := AsRefusal(err); ref != nil && (!ref.Definite() || ref.Subject != c.subject) {
				t.Errorf("%s: refusal %+v should be definite and about %q", what, ref, c.subject)
			}
			continue
		}
		if err != nil || op == nil || op.ID != c.wantOp || op.Status != Active {
			t.Errorf("%s = %+v, %v; want active operator %s", what, op, err, c.wantOp)
		}
	}
}

func TestAddValidation(t *testing.T) {
	r := New(openStore(t), nil)
	if err := r.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec := record(r)
	for _, c := range []struct {
		name  string
		edit  func(o *Operator)
		field string
	}{
		{"no id", func(o *Operator) { o.ID = "" }, FieldID},
		{"uppercase id", func(o *Operator) { o.ID = "Acme" }, FieldID},
		{"id starting with a dash", func(o *Operator) { o.ID = "-acme" }, FieldID},
		{"id with a slash", func(o *Operator) { o.ID = "acme/x" }, FieldID},
		{"id too long", func(o *Operator) { o.ID = strings.Repeat("a", 65) }, FieldID},
		{"no name", func(o *Operator) { o.Name = "   " }, FieldName},
		{"name with a newline", func(o *Operator) { o.Name = "ACME\nadmin=true" }, FieldName},
		{"no servers", func(o *Operator) { o.ServerNames = nil }, FieldServerNames},
		{"uppercase server", func(o *Operator) { o.ServerNames = []string{"Acme.example"} }, FieldServerNames},
		{"server with a path", func(o *Operator) { o.ServerNames = []string{"acme.example/matrix"} }, FieldServerNames},
		{"server twice", func(o *Operator) { o.ServerNames = []string{"acme.example", " acme.example"} }, FieldServerNames},
		{"bad port", func(o *Operator) { o.ServerNames = []string{"acme.example:99999"} }, FieldServerNames},
		{"no contact", func(o *Operator) { o.Contact = "" }, FieldContact},
		{"contact neither mail nor url", func(o *Operator) { o.Contact = "call Bob" }, FieldContact},
		{"contact ftp url", func(o *Operator) { o.Contact = "ftp://acme.example/" }, FieldContact},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := acme()
			c.edit(&o)
			_, err := r.Add(t.Context(), o, "test")
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field {
				t.Fatalf("error %v, want a ValidationError on %s", err, c.field)
			}
		})
	}
	ops, err := r.List(t.Context())
	if err != nil || len(ops) != 0 {
		t.Fatalf("refused adds stored something: %+v, %v", ops, err)
	}
	if got := rec.all(); len(got) != 0 {
		t.Fatalf("refused adds fired changes: %+v", got)
	}
}

func TestAddNormalizesAndDuplicates(t *testing.T) {
	ctx := t.Context()
	r := New(openStore(t), nil)
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	o := acme()
	o.ID, o.Name, o.Contact = " acme ", "  ACME Messenger ", " security@acme.example "
	got, err := r.Add(ctx, o, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "acme" || got.Name != "ACME Messenger" || got.Contact != "security@acme.example" ||
		!slices.Equal(got.ServerNames, []string{"acme.example", "matrix.acme.example:8448"}) || got.Status != Active {
		t.Fatalf("added %+v", got)
	}
	// The caller's copy is its own: changing it does not reach the checks.
	got.ServerNames[0] = "evil.example"
	got.Status = Revoked
	if op, err := r.CheckServer("acme.example"); err != nil || op.Status != Active {
		t.Fatalf("snapshot changed through a returned value: %v, %v", op, err)
	}
	if _, err := r.CheckServer("evil.example"); err == nil {
		t.Fatal("a returned value's slice is shared with the snapshot")
	}

	_, err = r.Add(ctx, Operator{ID: "acme", Name: "Other", ServerNames: []string{"other.example"}, Contact: "a@b.example"}, "test")
	if !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate id: %v, want ErrExists", err)
	}
	_, err = r.Add(ctx, Operator{ID: "globex", Name: "Globex", ServerNames: []string{"globex.example", "acme.example"}, Contact: "a@b.example"}, "test")
	var claimed *ServerClaimedError
	if !errors.As(err, &claimed) || claimed.ServerName != "acme.example" || claimed.Owner != "acme" || !errors.Is(err, ErrExists) {
		t.Fatalf("claimed server: %v", err)
	}
	if _, err := r.Check("globex"); err == nil {
		t.Fatal("a refused add reached the snapshot")
	}
}

func TestStatusChangesFireHooks(t *testing.T) {
	ctx := t.Context()
	r := New(openStore(t), nil)
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	rec := record(r)
	if _, err := r.Add(ctx, acme(), "@admin:hub.test"); err != nil {
		t.Fatal(err)
	}
	type step struct {
		name    string
		do      func() (*Operator, error)
		wantErr error // errors.Is target; nil: success
		field   string
		check   Code // expected refusal code of Check("acme") afterwards, "" for accepted
	}
	steps := []step{
		{"suspend without reason", func() (*Operator, error) { return r.Suspend(ctx, "acme", "  ", "@admin:hub.test") }, nil, FieldReason, ""},
		{"suspend", func() (*Operator, error) { return r.Suspend(ctx, "acme", "incident 42", "@admin:hub.test") }, nil, "", CodeOperatorSuspended},
		{"suspend again", func() (*Operator, error) { return r.Suspend(ctx, "acme", "incident 42 and 43", "@admin:hub.test") }, nil, "", CodeOperatorSuspended},
		{"reactivate", func() (*Operator, error) { return r.Reactivate(ctx, "acme", "", "cli:ops") }, nil, "", ""},
		{"revoke without reason", func() (*Operator, error) { return r.Revoke(ctx, "acme", "", "cli:ops") }, nil, FieldReason, ""},
		{"revoke", func() (*Operator, error) { return r.Revoke(ctx, "acme", "contract ended", "cli:ops") }, nil, "", CodeOperatorRevoked},
		{"reactivate revoked", func() (*Operator, error) { return r.Reactivate(ctx, "acme", "", "cli:ops") }, ErrRevoked, "", CodeOperatorRevoked},
		{"suspend revoked", func() (*Operator, error) { return r.Suspend(ctx, "acme", "x", "cli:ops") }, ErrRevoked, "", CodeOperatorRevoked},
		{"suspend unknown", func() (*Operator, error) { return r.Suspend(ctx, "nobody", "x", "cli:ops") }, ErrNotFound, "", CodeOperatorRevoked},
	}
	for _, s := range steps {
		op, err := s.do()
		switch {
		case s.field != "":
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != s.field {
				t.Errorf("%s: %v, want a ValidationError on %s", s.name, err, s.field)
			}
		case s.wantErr != nil:
			if !errors.Is(err, s.wantErr) {
				t.Errorf("%s: %v, want %v", s.name, err, s.wantErr)
			}
		case err != nil || op == nil:
			t.Errorf("%s: %v", s.name, err)
		}
		// The change is enforced at once, without a reload.
		_, cerr := r.Check("acme")
		if s.check == "" && cerr != nil {
			t.Errorf("after %s: Check refused: %v", s.name, cerr)
		} else if s.check != "" {
			if ref, ok := AsRefusal(cerr); !ok || ref.Code != s.check {
				t.Errorf("after %s: Check = %v, want %s", s.name, cerr, s.check)
			}
		}
	}
	got := rec.all()
	want := []struct {
		old, new Status
		actor    string
		reason   string
	}{
		{"", Active, "@admin:hub.test", ""},
		{Active, Suspended, "@admin:hub.test", "incident 42"},
		// "suspend again" changed the reason only: no transition, no hook.
		{Suspended, Active, "cli:ops", ""},
		{Active, Revoked, "cli:ops", "contract ended"},
	}
	if len(got) != len(want) {
		t.Fatalf("changes = %+v, want %d of them", got, len(want))
	}
	for i, w := range want {
		c := got[i]
		if c.Operator.ID != "acme" || c.Old != w.old || c.New != w.new || c.Actor != w.actor || c.Reason != w.reason {
			t.Errorf("change %d = %+v, want %+v", i, c, w)
		}
		if c.Operator.Status != w.new {
			t.Errorf("change %d carries the operator with status %s, want %s", i, c.Operator.Status, w.new)
		}
	}
	o, err := r.Get(ctx, "acme")
	if err != nil || o.Status != Revoked || o.StatusReason != "contract ended" {
		t.Fatalf("stored: %+v, %v", o, err)
	}
}

// TestWatchSeesOtherProcesses changes the store behind the registry's
// back, as the CLI or another hub instance does, and waits for Watch to
// notice: checks follow and hooks fire with no actor.
func TestWatchSeesOtherProcesses(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st := openStore(t)
	r := New(st, nil)
	if _, err := r.Add(ctx, acme(), "test"); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	rec := record(r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Watch(ctx, 5*time.Millisecond)
	}()

	// Another process: a second registry on the same store (the CLI).
	other := New(st, nil)
	if _, err := other.Suspend(ctx, "acme", "seen by the other process", "cli:ops"); err != nil {
		t.Fatal(err)
	}
	got := rec.waitFor(t, 1)
	c := got[0]
	if c.Operator.ID != "acme" || c.Old != Active || c.New != Suspended || c.Actor != "" || c.Reason != "seen by the other process" {
		t.Fatalf("change = %+v", c)
	}
	if _, err := r.Check("acme"); err == nil {
		t.Fatal("Check still accepts a suspended operator after the change was reported")
	}

	// An operator added directly in the store shows up too.
	if _, err := st.AddOperator(ctx, store.Operator{ID: "globex", Name: "Globex", ServerNames: []string{"globex.example"}, Contact: "a@globex.example"}); err != nil {
		t.Fatal(err)
	}
	got = rec.waitFor(t, 2)
	if c := got[1]; c.Operator.ID != "globex" || c.Old != "" || c.New != Active {
		t.Fatalf("change = %+v", c)
	}
	if op, err := r.CheckServer("globex.example"); err != nil || op.ID != "globex" {
		t.Fatalf("CheckServer after the add was noticed: %v, %v", op, err)
	}
	cancel()
	<-done // Watch returns when its context ends
	if n := len(rec.all()); n != 2 {
		t.Fatalf("%d changes, want 2: a reload with nothing new fires nothing", n)
	}
}

// flakyStore fails ListOperators on demand.
type flakyStore struct {
	store.OperatorStore
	fail  atomic.Bool
	lists atomic.Int64
}

func (f *flakyStore) ListOperators(ctx context.Context) ([]store.Operator, error) {
	f.lists.Add(1)
	if f.fail.Load() {
		return nil, errors.New("database unreachable")
	}
	return f.OperatorStore.ListOperators(ctx)
}

func TestFailedReloadKeepsLastSnapshot(t *testing.T) {
	ctx := t.Context()
	fs := &flakyStore{OperatorStore: openStore(t)}
	r := New(fs, nil)
	fs.fail.Store(true)
	if err := r.Load(ctx); err == nil {
		t.Fatal("Load succeeded on a failing store")
	}
	if _, err := r.Check("acme"); err == nil {
		t.Fatal("a registry whose first load failed accepted a check")
	}
	fs.fail.Store(false)
	if _, err := r.Add(ctx, acme(), "test"); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	if err := r.Load(ctx); err == nil {
		t.Fatal("Load succeeded on a failing store")
	}
	if op, err := r.Check("acme"); err != nil || op.ID != "acme" {
		t.Fatalf("after a failed reload: %v, %v; want the last snapshot kept", op, err)
	}
	// Watch keeps trying through failures.
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Watch(wctx, time.Millisecond) }()
	before := fs.lists.Load()
	deadline := time.Now().Add(20 * time.Second)
	for fs.lists.Load() < before+3 {
		if time.Now().After(deadline) {
			t.Fatal("Watch stopped retrying after a failed reload")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

// TestStaleSnapshotChange: another process suspended an operator, and this
// one suspends it too before its Watch noticed. The store saw no
// transition, but this process did (its checks accepted the operator
// until now), so the hook must fire.
func TestStaleSnapshotChange(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	r := New(st, nil)
	if _, err := r.Add(ctx, acme(), "test"); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	rec := record(r)
	if _, _, err := st.SetOperatorStatus(ctx, "acme", Suspended, "by the CLI"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Suspend(ctx, "acme", "by the admin API", "@admin:hub.test"); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 1 || got[0].Old != Active || got[0].New != Suspended || got[0].Actor != "@admin:hub.test" {
		t.Fatalf("changes = %+v, want one active -> suspended by the admin", got)
	}
	// A reload now has nothing to add.
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.all()); n != 1 {
		t.Fatalf("the reload reported the change again: %+v", rec.all())
	}
}

// TestHookMayCheck: hooks run under the write lock, and the checks they
// are documented to be allowed to call must not deadlock.
func TestHookMayCheck(t *testing.T) {
	ctx := t.Context()
	r := New(openStore(t), nil)
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var seen []error
	r.OnChange(func(c Change) {
		_, err := r.Check(c.Operator.ID)
		seen = append(seen, err)
	})
	if _, err := r.Add(ctx, acme(), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Suspend(ctx, "acme", "x", "test"); err != nil {
		t.Fatal(err)
	}
	// Hooks run after the snapshot is updated: they see the new state.
	if len(seen) != 2 || seen[0] != nil || seen[1] == nil {
		t.Fatalf("checks from hooks = %v, want accepted then refused", seen)
	}
}
