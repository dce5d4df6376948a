package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

var operatorTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"OperatorsAddGetList", testOperatorsAddGetList},
	{"OperatorsDuplicateID", testOperatorsDuplicateID},
	{"OperatorsDuplicateServer", testOperatorsDuplicateServer},
	{"OperatorsStatusTransitions", testOperatorsStatusTransitions},
	{"OperatorsByServerName", testOperatorsByServerName},
	{"OperatorsConcurrentRevoke", testOperatorsConcurrentRevoke},
	{"OperatorsConcurrentServerClaim", testOperatorsConcurrentServerClaim},
}

func operator(id string, servers ...string) store.Operator {
	return store.Operator{ID: id, Name: "Operator " + id, ServerNames: servers, Contact: "security@" + id + ".example"}
}

func addOperator(t *testing.T, s store.Store, o store.Operator) *store.Operator {
	t.Helper()
	got, err := s.AddOperator(t.Context(), o)
	must(t, "add operator "+o.ID, err)
	return got
}

func testOperatorsAddGetList(t *testing.T, s store.Store) {
	ctx := t.Context()
	if ops, err := s.ListOperators(ctx); err != nil || len(ops) != 0 {
		t.Fatalf("empty store: operators %v, %v", ops, err)
	}
	before := time.Now().Add(-time.Second)
	// Server names given out of order come back sorted.
	got := addOperator(t, s, operator("mediconnect", "matrix.mediconnect.example:8448", "chat.mediconnect.example"))
	if got.Status != store.OperatorActive {
		t.Errorf("status of a new operator = %q, want active (the default)", got.Status)
	}
	if want := []string{"chat.mediconnect.example", "matrix.mediconnect.example:8448"}; !slices.Equal(got.ServerNames, want) {
		t.Errorf("server names = %v, want %v", got.ServerNames, want)
	}
	if got.CreatedAt.Before(before) || !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("timestamps: created %v updated %v", got.CreatedAt, got.UpdatedAt)
	}
	addOperator(t, s, store.Operator{ID: "chu-nord", Name: "CHU Nord", ServerNames: []string{"hub.chu-nord.example"},
		Contact: "https://chu-nord.example/contact", Status: store.OperatorSuspended, StatusReason: "pending audit"})
	addOperator(t, s, operator("zeta"))

	g, err := s.GetOperator(ctx, "mediconnect")
	must(t, "get", err)
	if g.ID != "mediconnect" || g.Name != "Operator mediconnect" || g.Contact != "security@mediconnect.example" ||
		!slices.Equal(g.ServerNames, got.ServerNames) || !g.CreatedAt.Equal(got.CreatedAt) {
		t.Errorf("get = %+v, want %+v", g, got)
	}
	_, err = s.GetOperator(ctx, "nobody")
	wantErr(t, "get unknown", err, store.ErrNotFound)

	ops, err := s.ListOperators(ctx)
	must(t, "list", err)
	var ids []string
	for _, o := range ops {
		ids = append(ids, o.ID)
	}
	if want := []string{"chu-nord", "mediconnect", "zeta"}; !slices.Equal(ids, want) {
		t.Fatalf("list order = %v, want %v", ids, want)
	}
	if ops[0].Status != store.OperatorSuspended || ops[0].StatusReason != "pending audit" {
		t.Errorf("status given at add not kept: %+v", ops[0])
	}
	if ops[2].ServerNames == nil || len(ops[2].ServerNames) != 0 {
		t.Errorf("operator without servers: ServerNames = %#v, want an empty, non-nil slice", ops[2].ServerNames)
	}
	if _, err := s.AddOperator(ctx, store.Operator{ID: "bad", Name: "Bad", Contact: "x@y.example", Status: "paused"}); err == nil {
		t.Error("an unknown status must be refused")
	}
}

func testOperatorsDuplicateID(t *testing.T, s store.Store) {
	ctx := t.Context()
	addOperator(t, s, operator("acme", "acme.example"))
	_, err := s.AddOperator(ctx, operator("acme", "other.example"))
	wantErr(t, "duplicate id", err, store.ErrExists)
	var claimed *store.ServerClaimedError
	if errors.As(err, &claimed) {
		t.Errorf("a duplicate ID reported as a claimed server: %v", err)
	}
	// The refused add left nothing behind.
	_, err = s.OperatorByServerName(ctx, "other.example")
	wantErr(t, "server of a refused add", err, store.ErrNotFound)
	o, err := s.GetOperator(ctx, "acme")
	must(t, "get", err)
	if !slices.Equal(o.ServerNames, []string{"acme.example"}) || o.Name != "Operator acme" {
		t.Errorf("the existing operator changed: %+v", o)
	}
}

func testOperatorsDuplicateServer(t *testing.T, s store.Store) {
	ctx := t.Context()
	addOperator(t, s, operator("acme", "acme.example", "shared.example"))
	_, err := s.AddOperator(ctx, operator("globex", "globex.example", "shared.example"))
	wantErr(t, "claimed server", err, store.ErrExists)
	var claimed *store.ServerClaimedError
	if !errors.As(err, &claimed) || claimed.ServerName != "shared.example" || claimed.Owner != "acme" {
		t.Fatalf("error = %v, want a ServerClaimedError naming shared.example and acme", err)
	}
	// All or nothing: neither the operator nor its other server exists.
	_, err = s.GetOperator(ctx, "globex")
	wantErr(t, "operator of a refused add", err, store.ErrNotFound)
	_, err = s.OperatorByServerName(ctx, "globex.example")
	wantErr(t, "unclaimed server of a refused add", err, store.ErrNotFound)
	// Revoking acme does not free its servers: they stay refused.
	_, _, err = s.SetOperatorStatus(ctx, "acme", store.OperatorRevoked, "breach")
	must(t, "revoke", err)
	_, err = s.AddOperator(ctx, operator("initech", "shared.example"))
	wantErr(t, "server of a revoked operator", err, store.ErrExists)
}

func testOperatorsStatusTransitions(t *testing.T, s store.Store) {
	ctx := t.Context()
	created := addOperator(t, s, operator("acme", "acme.example"))
	steps := []struct {
		to       store.OperatorStatus
		reason   string
		wantPrev store.OperatorStatus
		wantErr  error
	}{
		{store.OperatorSuspended, "unpaid invoice", store.OperatorActive, nil},
		{store.OperatorSuspended, "unpaid invoices", store.OperatorSuspended, nil}, // same status: new reason
		{store.OperatorActive, "", store.OperatorSuspended, nil},                   // reactivate
		{store.OperatorSuspended, "incident 42", store.OperatorActive, nil},
		{store.OperatorRevoked, "contract ended", store.OperatorSuspended, nil},
		{store.OperatorActive, "mistake", "", store.ErrRevoked},
		{store.OperatorSuspended, "", "", store.ErrRevoked},
		{store.OperatorRevoked, "again", "", store.ErrRevoked},
	}
	last := created
	for i, st := range steps {
		what := fmt.Sprintf("step %d (-> %s)", i, st.to)
		got, prev, err := s.SetOperatorStatus(ctx, "acme", st.to, st.reason)
		if st.wantErr != nil {
			wantErr(t, what, err, st.wantErr)
			continue
		}
		must(t, what, err)
		if prev != st.wantPrev {
			t.Errorf("%s: previous status %q, want %q", what, prev, st.wantPrev)
		}
		if got.Status != st.to || got.StatusReason != st.reason {
			t.Errorf("%s: returned %q/%q", what, got.Status, got.StatusReason)
		}
		if got.UpdatedAt.Before(last.UpdatedAt) || !got.CreatedAt.Equal(created.CreatedAt) {
			t.Errorf("%s: timestamps created %v updated %v, before: %v %v", what, got.CreatedAt, got.UpdatedAt, created.CreatedAt, last.UpdatedAt)
		}
		last = got
	}
	// The refused changes left the revocation as it was.
	o, err := s.GetOperator(ctx, "acme")
	must(t, "get", err)
	if o.Status != store.OperatorRevoked || o.StatusReason != "contract ended" {
		t.Errorf("after refused changes: %q/%q, want revoked/contract ended", o.Status, o.StatusReason)
	}
	_, _, err = s.SetOperatorStatus(ctx, "nobody", store.OperatorSuspended, "x")
	wantErr(t, "unknown operator", err, store.ErrNotFound)
	addOperator(t, s, operator("globex"))
	if _, _, err := s.SetOperatorStatus(ctx, "globex", "paused", ""); err == nil {
		t.Error("an unknown status must be refused")
	}
}

func testOperatorsByServerName(t *testing.T, s store.Store) {
	ctx := t.Context()
	addOperator(t, s, operator("acme", "acme.example", "[2001:db8::1]:8448"))
	addOperator(t, s, operator("globex", "globex.example"))
	for _, c := range []struct{ server, want string }{
		{"acme.example", "acme"},
		{"[2001:db8::1]:8448", "acme"},
		{"globex.example", "globex"},
		{"unknown.example", ""},
		{"acme.example:8448", ""}, // a port makes another server name
		{"ACME.example", ""},      // exact match only
		{"", ""},
	} {
		o, err := s.OperatorByServerName(ctx, c.server)
		if c.want == "" {
			wantErr(t, "by server "+c.server, err, store.ErrNotFound)
			continue
		}
		if err != nil || o.ID != c.want {
			t.Errorf("by server %q = %v, %v; want %s", c.server, o, err, c.want)
			continue
		}
		if len(o.ServerNames) == 0 {
			t.Errorf("by server %q: server names not filled", c.server)
		}
	}
	_, _, err := s.SetOperatorStatus(ctx, "globex", store.OperatorSuspended, "audit")
	must(t, "suspend", err)
	o, err := s.OperatorByServerName(ctx, "globex.example")
	must(t, "by server after suspend", err)
	if o.Status != store.OperatorSuspended || o.StatusReason != "audit" {
		t.Errorf("by server after suspend: %q/%q", o.Status, o.StatusReason)
	}
}

// testOperatorsConcurrentRevoke races revocations of one operator: the
// store must let exactly one through, each other seeing it and refusing.
func testOperatorsConcurrentRevoke(t *testing.T, s store.Store) {
	addOperator(t, s, operator("acme", "acme.example"))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, _, errs[i] = s.SetOperatorStatus(t.Context(), "acme", store.OperatorRevoked, fmt.Sprint("revoker ", i))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrRevoked):
			t.Errorf("revoker %d: %v, want success or ErrRevoked", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d revocations succeeded, want exactly 1", ok)
	}
}

// testOperatorsConcurrentServerClaim races operators claiming one server
// name: exactly one may hold it.
func testOperatorsConcurrentServerClaim(t *testing.T, s store.Store) {
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.AddOperator(t.Context(), operator(fmt.Sprint("op", i), fmt.Sprintf("own%d.example", i), "contested.example"))
		})
	}
	close(start)
	wg.Wait()
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil:
			if winner != "" {
				t.Errorf("both %s and op%d claimed contested.example", winner, i)
			}
			winner = fmt.Sprint("op", i)
		case !errors.Is(err, store.ErrExists):
			t.Errorf("op%d: %v, want success or ErrExists", i, err)
		}
	}
	o, err := s.OperatorByServerName(t.Context(), "contested.example")
	must(t, "by server", err)
	if o.ID != winner {
		t.Errorf("contested.example belongs to %s, but %q won the race", o.ID, winner)
	}
	ops, err := s.ListOperators(t.Context())
	must(t, "list", err)
	if len(ops) != 1 {
		t.Errorf("%d operators stored, want only the winner", len(ops))
	}
}
