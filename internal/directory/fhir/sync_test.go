package fhir

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/directory/fhir/fhirtest"
	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

// Sync is tested against a real SQLite store rather than a fake one: what
// matters is what ends up current in the database (generations, carried-over
// inactive practitioners, the revision), and that is the store's behaviour
// as much as Sync's.
func newSyncStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// storeState is everything a sync may change.
type storeState struct {
	Stats    store.DirectoryStats
	Revision int64
	Cursor   string // "" before the first successful sync
	Records  []store.DirectoryRecord
}

func stateOf(t *testing.T, st *sqlite.Store) storeState {
	t.Helper()
	ctx := context.Background()
	var s storeState
	var err error
	if s.Stats, err = st.DirectoryStats(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Revision, err = st.DirectoryRevision(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Cursor, err = st.GetMeta(ctx, metaSince); err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	err = st.DirectoryPractitioners(ctx, func(r store.DirectoryRecord) error {
		s.Records = append(s.Records, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s storeState) byIDNat() map[string]store.DirectoryRecord {
	m := map[string]store.DirectoryRecord{}
	for _, r := range s.Records {
		m[r.IDNat] = r
	}
	return m
}

// firstQuery is the search a sync started with: the first request the fake
// served after `before` requests.
func firstQuery(t *testing.T, f *fhirtest.Server, before int) url.Values {
	t.Helper()
	qs := f.Stats().Queries
	if len(qs) <= before {
		t.Fatalf("no request after the first %d", before)
	}
	q, err := url.ParseQuery(qs[before])
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func mustSync(t *testing.T, st SyncStore, c *Client, full bool) SyncResult {
	t.Helper()
	res, err := Sync(context.Background(), st, c, full)
	if err != nil {
		t.Fatalf("Sync(full=%v): %v", full, err)
	}
	return res
}

func TestSyncFullThenIncremental(t *testing.T) {
	recs := fhirtest.Generate(8, t0)
	f := fhirtest.New(t, testKey, recs)
	c := newTestClient(t, f, nil)
	st := newSyncStore(t)

	res := mustSync(t, st, c, false)
	if !res.Full || res.Practitioners != 8 || res.Inactivated != 0 || !res.Since.IsZero() || res.Stats.Pages != 3 {
		t.Fatalf("first sync = %+v, want a full read of 8 practitioners in 3 pages", res)
	}
	if q := firstQuery(t, f, 0); q.Has("_lastUpdated") {
		t.Errorf("first sync filtered on _lastUpdated: %v", q)
	}
	after1 := stateOf(t, st)
	if s := after1.Stats; s.Generation != 1 || s.Active != 8 || s.Inactive != 0 {
		t.Fatalf("after the first sync: %+v, want generation 1 with 8 active", s)
	}
	if after1.Cursor == "" {
		t.Fatal("no cursor saved after a successful sync")
	}

	leaver := recs[2].IDNat()
	newcomer := fhirtest.Fictional(8, t0) // Put stamps it as updated now
	f.SetActive(leaver, false)
	f.Put(newcomer)
	before := len(f.Stats().Queries)
	res = mustSync(t, st, c, false)
	if res.Full || res.Practitioners != 2 || res.Inactivated != 1 {
		t.Fatalf("second sync = %+v, want an incremental one bringing 2 practitioners, 1 inactivated", res)
	}
	// The search must start from the cursor the previous sync saved, not
	// from anything Sync recomputes.
	if got, want := firstQuery(t, f, before).Get("_lastUpdated"), "ge"+after1.Cursor; got != want {
		t.Errorf("_lastUpdated = %q, want %q", got, want)
	}
	if got := res.Since.UTC().Format(time.RFC3339); got != after1.Cursor {
		t.Errorf("res.Since = %s, want the saved cursor %s", got, after1.Cursor)
	}

	after2 := stateOf(t, st)
	if s := after2.Stats; s.Generation != 1 || s.Active != 8 || s.Inactive != 1 {
		t.Errorf("after the incremental sync: %+v, want generation 1 with 8 active and 1 inactive", s)
	}
	byID := after2.byIDNat()
	if r, ok := byID[leaver]; !ok || r.Active {
		t.Errorf("%s: %+v, want it kept and inactive", leaver, r)
	}
	if r, ok := byID[newcomer.IDNat()]; !ok || !r.Active || r.LastName != "DUPONT-TEST" {
		t.Errorf("newcomer %s: %+v, want it added, active", newcomer.IDNat(), r)
	}
	if after2.Revision == after1.Revision {
		t.Errorf("directory revision stayed at %d after an incremental change", after2.Revision)
	}
	if c2, _ := time.Parse(time.RFC3339, after2.Cursor); c2.Before(res.Since) {
		t.Errorf("cursor went back from %s to %s", after1.Cursor, after2.Cursor)
	}
}

func TestSyncMode(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, st *sqlite.Store, c *Client)
		full     bool
		wantFull bool
	}{
		{"first sync", nil, false, true},
		{"after a sync", func(t *testing.T, st *sqlite.Store, c *Client) { mustSync(t, st, c, false) }, false, false},
		{"full requested", func(t *testing.T, st *sqlite.Store, c *Client) { mustSync(t, st, c, false) }, true, true},
		{"directory imported from a file, never synced", func(t *testing.T, st *sqlite.Store, _ *Client) {
			// Without a cursor there is no "since" to ask from.
			importFile(t, st)
		}, false, true},
		{"directory imported from a file after a sync", func(t *testing.T, st *sqlite.Store, c *Client) {
			// The file's generation may be older than the cursor says we
			// are (relisting practitioners the API deactivated since), and
			// an incremental sync would never ask for those changes again.
			mustSync(t, st, c, false)
			importFile(t, st)
		}, false, true},
		{"unreadable cursor", func(t *testing.T, st *sqlite.Store, c *Client) {
			mustSync(t, st, c, false)
			if err := st.PutMeta(context.Background(), metaSince, "yesterday-ish"); err != nil {
				t.Fatal(err)
			}
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fhirtest.New(t, testKey, fhirtest.Generate(4, t0))
			c := newTestClient(t, f, nil)
			st := newSyncStore(t)
			if tt.setup != nil {
				tt.setup(t, st, c)
			}
			before := len(f.Stats().Queries)
			res := mustSync(t, st, c, tt.full)
			if res.Full != tt.wantFull {
				t.Errorf("Full = %v, want %v", res.Full, tt.wantFull)
			}
			if got := firstQuery(t, f, before).Has("_lastUpdated"); got == tt.wantFull {
				t.Errorf("_lastUpdated sent = %v on a sync with Full = %v", got, tt.wantFull)
			}
		})
	}
}

// TestSyncFailureKeepsDirectory: whatever goes wrong, the stored directory,
// its revision and the cursor stay exactly as they were, so readers keep the
// last good directory and the next sync asks for the same changes again.
func TestSyncFailureKeepsDirectory(t *testing.T) {
	tests := []struct {
		name    string
		prior   bool // run a successful sync first
		breakIt func(t *testing.T, f *fhirtest.Server, recs []fhirtest.Record)
		full    bool
		wantIs  error // nil: any error
		status  int   // HTTP status the error must carry, 0 for none
		// recovered, when set, runs after the API is back up and one more
		// (incremental) sync succeeded.
		recovered func(t *testing.T, s storeState, recs []fhirtest.Record)
	}{
		{name: "outage on the first sync", breakIt: down, status: http.StatusServiceUnavailable},
		{name: "outage on an incremental sync", prior: true,
			breakIt: func(t *testing.T, f *fhirtest.Server, recs []fhirtest.Record) {
				f.SetActive(recs[1].IDNat(), false)
				f.SetDown(true)
			},
			status: http.StatusServiceUnavailable,
			recovered: func(t *testing.T, s storeState, recs []fhirtest.Record) {
				// The change made during the outage is not lost.
				if r := s.byIDNat()[recs[1].IDNat()]; r.Active {
					t.Errorf("change made during the outage never applied: %+v", r)
				}
			}},
		{name: "outage on a forced full sync", prior: true, breakIt: down, full: true, status: http.StatusServiceUnavailable},
		{name: "page 2 fails during a full sync", prior: true, full: true, status: http.StatusInternalServerError,
			breakIt: func(t *testing.T, f *fhirtest.Server, _ []fhirtest.Record) {
				// Page 2 and its two retries (newTestClient allows 2).
				n := f.Stats().Served
				for i := 2; i <= 4; i++ {
					f.Inject(n+i, fhirtest.Fault{Status: http.StatusInternalServerError})
				}
			}},
		{name: "full read with no practitioner", prior: true, full: true, wantIs: directory.ErrEmptyExtract,
			breakIt: func(t *testing.T, f *fhirtest.Server, recs []fhirtest.Record) {
				for _, r := range recs {
					f.Remove(r.IDNat())
				}
			}},
		{name: "first sync with no practitioner", wantIs: directory.ErrEmptyExtract,
			breakIt: func(t *testing.T, f *fhirtest.Server, recs []fhirtest.Record) {
				for _, r := range recs {
					f.Remove(r.IDNat())
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := fhirtest.Generate(7, t0)
			f := fhirtest.New(t, testKey, recs)
			c := newTestClient(t, f, nil)
			st := newSyncStore(t)
			if tt.prior {
				mustSync(t, st, c, false)
			}
			want := stateOf(t, st)
			tt.breakIt(t, f, recs)

			_, err := Sync(context.Background(), st, c, tt.full)
			if err == nil {
				t.Fatal("sync succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want %v", err, tt.wantIs)
			}
			var apiErr *APIError
			if tt.status != 0 && (!errors.As(err, &apiErr) || apiErr.Status != tt.status) {
				t.Errorf("err = %v, want HTTP %d", err, tt.status)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("API key in error: %v", err)
			}
			if got := stateOf(t, st); !reflect.DeepEqual(got, want) {
				t.Errorf("store changed by a failed sync:\n got  %+v\n want %+v", got, want)
			}

			if tt.recovered != nil {
				f.SetDown(false)
				mustSync(t, st, c, false)
				tt.recovered(t, stateOf(t, st), recs)
			}
		})
	}
}

// importFile commits a one-practitioner generation the way a bulk file
// import does, behind Sync's back.
func importFile(t *testing.T, st *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	im, err := st.BeginDirectoryImport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Abort(ctx) //nolint:errcheck // a no-op after Commit
	rec, err := directory.RecordFromPractitioner(directory.Practitioner{IDNat: "8" + fhirtest.RPPS(9000), RPPS: fhirtest.RPPS(9000), Active: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Add(ctx, []store.DirectoryRecord{rec}); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func down(_ *testing.T, f *fhirtest.Server, _ []fhirtest.Record) { f.SetDown(true) }

// TestSyncIncrementalAcceptsNoChange: an incremental sync that finds
// nothing is normal (a quiet hour), unlike a full read that finds nobody.
func TestSyncIncrementalAcceptsNoChange(t *testing.T) {
	recs := fhirtest.Generate(5, t0)
	f := fhirtest.New(t, testKey, recs)
	c := newTestClient(t, f, nil)
	st := newSyncStore(t)
	mustSync(t, st, c, false)
	want := stateOf(t, st)
	// Deletions do not show in a _lastUpdated search: the stored directory
	// keeps the practitioner until the next full sync.
	f.Remove(recs[0].IDNat())

	res := mustSync(t, st, c, false)
	if res.Full || res.Practitioners != 0 || res.Inactivated != 0 {
		t.Fatalf("res = %+v, want an empty incremental sync", res)
	}
	got := stateOf(t, st)
	if !reflect.DeepEqual(got.Records, want.Records) || got.Stats != want.Stats {
		t.Errorf("an empty incremental sync changed the directory")
	}
	// No write, no new revision: nothing for the trust keeper to reload.
	if got.Revision != want.Revision {
		t.Errorf("revision moved from %d to %d with nothing synced", want.Revision, got.Revision)
	}
}

func TestSyncForcedFull(t *testing.T) {
	recs := fhirtest.Generate(6, t0)
	f := fhirtest.New(t, testKey, recs)
	c := newTestClient(t, f, nil)
	st := newSyncStore(t)
	mustSync(t, st, c, false)
	before := stateOf(t, st)
	gone := []string{recs[0].IDNat(), recs[4].IDNat()}
	for _, id := range gone {
		f.Remove(id)
	}

	served := f.Stats().Served
	res := mustSync(t, st, c, true)
	// Inactivated counts the previously active practitioners the new
	// generation no longer lists.
	if !res.Full || res.Practitioners != 4 || res.Inactivated != 2 {
		t.Fatalf("res = %+v, want a full read of 4 practitioners, 2 inactivated", res)
	}
	if q := firstQuery(t, f, served); q.Has("_lastUpdated") {
		t.Errorf("forced full sync filtered on _lastUpdated: %v", q)
	}
	after := stateOf(t, st)
	if s := after.Stats; s.Generation <= before.Stats.Generation || s.Active != 4 || s.Inactive != 2 {
		t.Errorf("stats = %+v, want a new generation (was %d) with 4 active and 2 inactive", s, before.Stats.Generation)
	}
	byID := after.byIDNat()
	for _, r := range recs {
		id := r.IDNat()
		wantActive := id != gone[0] && id != gone[1]
		got, ok := byID[id]
		if !ok {
			// Known but gone must stay distinguishable from unknown.
			t.Errorf("%s dropped from the directory", id)
		} else if got.Active != wantActive {
			t.Errorf("%s active = %v, want %v", id, got.Active, wantActive)
		}
	}
	if after.Revision == before.Revision {
		t.Error("revision did not move with a new generation")
	}
}
