package directory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
	"github.com/eimis-hub/eimis/internal/store/postgres"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var samplePath = filepath.Join("..", "..", "schemas", "sample", "PS_LibreAcces_Personne_activite_sample.txt")

// dialects runs fn once per store dialect, each on a fresh database.
func dialects(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		st, err := postgres.Open(t.Context(), pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, st)
	})
}

func importFile(t *testing.T, st Store, path string, opts ReadOptions) (Report, ImportResult, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Import(t.Context(), st, f, opts)
}

func importString(t *testing.T, st Store, s string, opts ReadOptions) (Report, ImportResult, error) {
	t.Helper()
	return Import(t.Context(), st, strings.NewReader(s), opts)
}

func storedPractitioners(t *testing.T, st Store) map[string]Practitioner {
	t.Helper()
	out := map[string]Practitioner{}
	err := st.DirectoryPractitioners(t.Context(), func(rec store.DirectoryRecord) error {
		p, err := PractitionerFromRecord(rec)
		out[p.IDNat] = p
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImportSample(t *testing.T) {
	want, _, err := readFile(t, samplePath, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dialects(t, func(t *testing.T, st store.Store) {
		rep, res, err := importFile(t, st, samplePath, ReadOptions{MaxBadRows: 1})
		if err != nil {
			t.Fatal(err)
		}
		if rep.People != 30 || !res.Committed || res.Written != 30 || res.Inactivated != 0 ||
			res.Stats.Active != 30 || res.Stats.Inactive != 0 || res.Stats.Generation == 0 {
			t.Fatalf("report %+v, result %+v", rep, res)
		}
		// What is stored reads back as exactly what the extract said.
		if got := storedPractitioners(t, st); !reflect.DeepEqual(got, byIDNat(want)) {
			t.Fatalf("stored directory differs from the extract:\n got %+v\nwant %+v", got, byIDNat(want))
		}
		ix, err := LoadIndex(t.Context(), st)
		if err != nil {
			t.Fatal(err)
		}
		if ix.Len() != 30 {
			t.Fatalf("index has %d entries, want 30", ix.Len())
		}
		if e, ok := ix.Lookup("810000000025"); !ok || !e.Active || e.DisplayName != "Jérôme de La Rochebrune - Médecin" {
			t.Fatalf("Lookup = %+v, %v", e, ok)
		}

		// Re-importing the same file changes nothing but the generation.
		_, res2, err := importFile(t, st, samplePath, ReadOptions{MaxBadRows: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res2.Inactivated != 0 || res2.Stats.Active != 30 || res2.Stats.Generation <= res.Stats.Generation {
			t.Fatalf("re-import: %+v after %+v", res2, res)
		}
	})
}

// sampleWithout is the sample extract minus every row of idNat.
func sampleWithout(t *testing.T, idNat string) string {
	t.Helper()
	b, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if !strings.Contains(line, "|"+idNat+"|") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "")
}

func TestImportInactivatesAbsent(t *testing.T) {
	const gone = "810000000025"
	dialects(t, func(t *testing.T, st store.Store) {
		if _, _, err := importFile(t, st, samplePath, ReadOptions{}); err != nil {
			t.Fatal(err)
		}
		rep, res, err := importString(t, st, sampleWithout(t, gone), ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.People != 29 || res.Inactivated != 1 || res.Stats.Active != 29 || res.Stats.Inactive != 1 {
			t.Fatalf("report %+v, result %+v", rep, res)
		}
		ix, err := LoadIndex(t.Context(), st)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := ix.Lookup(gone)
		if !ok || e.Active {
			t.Fatalf("absent practitioner must stay known and inactive: %+v, %v", e, ok)
		}
		if hits := ix.Search("Rochebrune", 10); len(hits) != 0 {
			t.Fatalf("inactive practitioner found by search: %+v", hits)
		}
		// Back in the next extract, active again.
		if _, res, err := importFile(t, st, samplePath, ReadOptions{}); err != nil || res.Stats.Active != 30 || res.Stats.Inactive != 0 {
			t.Fatalf("re-import with the practitioner back: %+v, %v", res, err)
		}
	})
}

func TestImportRefusedKeepsPrevious(t *testing.T) {
	dialects(t, func(t *testing.T, st store.Store) {
		_, first, err := importFile(t, st, samplePath, ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := storedPractitioners(t, st)
		check := func(t *testing.T, what string, rep Report, res ImportResult, err error, want error) {
			t.Helper()
			if !errors.Is(err, want) {
				t.Fatalf("%s: error %v, want %v", what, err, want)
			}
			if res.Committed || res.Inactivated != 0 {
				t.Fatalf("%s: result %+v", what, res)
			}
			stats, serr := st.DirectoryStats(t.Context())
			if serr != nil {
				t.Fatal(serr)
			}
			if stats != first.Stats {
				t.Fatalf("%s: stats %+v, want the previous %+v", what, stats, first.Stats)
			}
			if got := storedPractitioners(t, st); !reflect.DeepEqual(got, before) {
				t.Fatalf("%s: stored directory changed", what)
			}
		}

		rep, res, err := importFile(t, st, filepath.Join("testdata", "bad_rows.txt"), ReadOptions{MaxBadRows: 3})
		check(t, "too many bad rows", rep, res, err, ErrTooManyBadRows)
		if rep.BadRows != 4 || len(rep.Examples) == 0 || rep.Examples[0].Line == 0 {
			t.Fatalf("report of the refused import = %+v", rep)
		}

		rep, res, err = importFile(t, st, filepath.Join("testdata", "missing_column.txt"), ReadOptions{})
		check(t, "missing column", rep, res, err, ErrMissingColumns)

		header, _, _ := strings.Cut(sampleWithout(t, ""), "\n")
		rep, res, err = importString(t, st, header+"\n", ReadOptions{})
		check(t, "header only", rep, res, err, ErrEmptyExtract)

		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		rep, res, err = Import(ctx, st, strings.NewReader(sampleWithout(t, "")), ReadOptions{})
		check(t, "cancelled", rep, res, err, context.Canceled)
	})
}

// TestImportLargerThanBatch crosses several store batches, so a batch
// boundary bug (last partial batch lost, slice reused too early) shows.
func TestImportLargerThanBatch(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(strings.Join(ExtractColumns, "|") + "|\n")
	const people = importBatch*2 + 345
	for i := range people {
		rpps := withCheckDigit(t, fmt.Sprintf("2%09d", i))
		sb.WriteString(personRow(t, rpps, "NOM"+itoa(i), "PRÉNOM", "10", "Médecin", "") + "\n")
	}
	dialects(t, func(t *testing.T, st store.Store) {
		_, res, err := importString(t, st, sb.String(), ReadOptions{MaxBadRows: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Written != people || res.Stats.Active != people {
			t.Fatalf("result %+v, want %d practitioners", res, people)
		}
		ix, err := LoadIndex(t.Context(), st)
		if err != nil {
			t.Fatal(err)
		}
		if ix.Len() != people {
			t.Fatalf("index has %d, want %d", ix.Len(), people)
		}
	})
}

func TestImportLatin1(t *testing.T) {
	dialects(t, func(t *testing.T, st store.Store) {
		rep, _, err := importFile(t, st, filepath.Join("testdata", "latin1.txt"), ReadOptions{MaxBadRows: 1})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Encoding != EncodingWindows1252 {
			t.Fatalf("encoding %q", rep.Encoding)
		}
		want, _, err := readFile(t, filepath.Join("testdata", "latin1.txt"), ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := storedPractitioners(t, st); !reflect.DeepEqual(got, byIDNat(want)) {
			t.Fatalf("stored %+v, want %+v", got, byIDNat(want))
		}
	})
}

// BenchmarkImport imports a generated 200,000-row extract (150,000
// practitioners) into each dialect, then re-imports it, which exercises the
// switch against a full previous generation.
func BenchmarkImport(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a ~70 MB file")
	}
	const rows = 200_000
	path := filepath.Join(b.TempDir(), "extract.txt")
	people := writeBenchExtract(b, path, rows)
	run := func(b *testing.B, st store.Store) {
		for b.Loop() {
			for _, pass := range []string{"first", "again"} {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				_, res, err := Import(b.Context(), st, f, ReadOptions{MaxBadRows: 1})
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				if res.Written != people {
					b.Fatalf("wrote %d, want %d", res.Written, people)
				}
				b.Logf("%s import: %d rows, %d practitioners in %s", pass, rows, people, time.Since(start).Round(time.Millisecond))
			}
			start := time.Now()
			ix, err := LoadIndex(b.Context(), st)
			if err != nil || ix.Len() != people {
				b.Fatalf("LoadIndex: %d, %v", ix.Len(), err)
			}
			b.Logf("LoadIndex: %s", time.Since(start).Round(time.Millisecond))
		}
	}
	b.Run("sqlite", func(b *testing.B) {
		st, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "hub.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		run(b, st)
	})
	b.Run("postgres", func(b *testing.B) {
		st, err := postgres.Open(b.Context(), pgtest.URL(b))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		run(b, st)
	})
}
