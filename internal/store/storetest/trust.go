package storetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

var trustTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ServiceAccounts", testServiceAccounts},
	{"AccountsListing", testAccountsListing},
	{"LoginTokens", testLoginTokens},
	{"DirectoryUpsert", testDirectoryUpsert},
}

func testServiceAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := store.ServiceAccount{Localpart: "cardio-chu", Kind: store.KindOrganisational, Name: "Cardiologie CHU", ResponsibleIDNat: "810000000001"}
	must(t, "create", s.CreateServiceAccount(ctx, a))
	wantErr(t, "duplicate", s.CreateServiceAccount(ctx, a), store.ErrExists)
	must(t, "create admin", s.CreateServiceAccount(ctx, store.ServiceAccount{Localpart: "ops", Kind: store.KindAdmin, Name: "Ops"}))
	if err := s.CreateServiceAccount(ctx, store.ServiceAccount{Localpart: "x", Kind: "robot", Name: "X"}); err == nil {
		t.Fatal("an unknown kind must be refused by the schema")
	}
	got, err := s.ServiceAccounts(ctx)
	must(t, "list", err)
	if len(got) != 2 || got[0].Localpart != "cardio-chu" || got[0].ResponsibleIDNat != "810000000001" || got[0].Kind != store.KindOrganisational || got[1].Kind != store.KindAdmin {
		t.Fatalf("service accounts = %+v", got)
	}
	if got[0].CreatedAt.IsZero() {
		t.Fatal("created_at not set")
	}
}

func testAccountsListing(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, lp := range []string{"carol", "alice", "bob"} {
		must(t, "create", s.CreateAccount(ctx, store.Account{Localpart: lp, PasswordHash: "secret-hash"}))
	}
	var seen []string
	must(t, "accounts", s.Accounts(ctx, func(a store.Account) error {
		if a.PasswordHash != "" {
			t.Error("Accounts must not return password hashes")
		}
		seen = append(seen, a.Localpart)
		return nil
	}))
	if len(seen) != 3 || seen[0] != "alice" || seen[2] != "carol" {
		t.Fatalf("accounts = %v, want alice, bob, carol", seen)
	}
	stop := errors.New("stop")
	if err := s.Accounts(ctx, func(store.Account) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("callback error = %v, want it wrapped", err)
	}
	ex, err := s.AccountsExist(ctx, []string{"alice", "zed", "carol"})
	must(t, "exist", err)
	if !ex["alice"] || !ex["carol"] || ex["zed"] || len(ex) != 2 {
		t.Fatalf("exist = %v", ex)
	}
	ex, err = s.AccountsExist(ctx, nil)
	must(t, "exist empty", err)
	if len(ex) != 0 {
		t.Fatalf("exist(nil) = %v", ex)
	}
}

func testLoginTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now()
	h1, h2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	must(t, "put", s.PutLoginToken(ctx, h1, "alice", now.Add(time.Minute)))
	must(t, "put expired", s.PutLoginToken(ctx, h2, "bob", now.Add(-time.Second)))
	lp, err := s.TakeLoginToken(ctx, h1, now)
	must(t, "take", err)
	if lp != "alice" {
		t.Fatalf("took %q", lp)
	}
	_, err = s.TakeLoginToken(ctx, h1, now)
	wantErr(t, "reuse", err, store.ErrNotFound)
	_, err = s.TakeLoginToken(ctx, h2, now)
	wantErr(t, "expired", err, store.ErrNotFound)
	_, err = s.TakeLoginToken(ctx, bytes.Repeat([]byte{3}, 32), now)
	wantErr(t, "unknown", err, store.ErrNotFound)
}

func testDirectoryUpsert(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.UpsertDirectory(ctx, []store.DirectoryRecord{dirRec("810000000001", "A")})
	wantErr(t, "upsert before import", err, store.ErrNotFound)
	rev0, err := s.DirectoryRevision(ctx)
	must(t, "revision", err)
	importDir(t, s, 10, dirRec("810000000001", "Alpha"), dirRec("810000000002", "Beta"))
	rev1, err := s.DirectoryRevision(ctx)
	must(t, "revision", err)
	if rev1 == rev0 {
		t.Fatal("an import must move the revision")
	}
	gone := dirRec("810000000001", "Alpha")
	gone.Active = false
	renamed := dirRec("810000000002", "Beta-Gamma")
	added := dirRec("810000000003", "Delta")
	n, err := s.UpsertDirectory(ctx, []store.DirectoryRecord{gone, renamed, added})
	must(t, "upsert", err)
	if n != 1 {
		t.Fatalf("inactivated = %d, want 1", n)
	}
	rev2, err := s.DirectoryRevision(ctx)
	must(t, "revision", err)
	if rev2 == rev1 {
		t.Fatal("an upsert must move the revision")
	}
	d := readDir(t, s)
	if len(d) != 3 || d["810000000001"].Active || d["810000000002"].LastName != "Beta-Gamma" || !d["810000000003"].Active {
		t.Fatalf("directory after upsert = %+v", d)
	}
	// Inactive again: not counted twice.
	n, err = s.UpsertDirectory(ctx, []store.DirectoryRecord{gone})
	must(t, "upsert again", err)
	if n != 0 {
		t.Fatalf("inactivated = %d, want 0 for an already inactive practitioner", n)
	}
	if st := dirStats(t, s); st.Active != 2 || st.Inactive != 1 {
		t.Fatalf("stats = %+v", st)
	}
}
