package directory

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

const benchPeople = 1_000_000

func benchIDNats(b *testing.B, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = IDNatFromRPPS(withCheckDigit(b, fmt.Sprintf("1%09d", i*7+3)))
	}
	return ids
}

// BenchmarkLookup measures the policy hot path on a directory of realistic
// size, and the string-keyed alternative the Index could have used.
func BenchmarkLookup(b *testing.B) {
	ids := benchIDNats(b, benchPeople)
	bld := NewIndexBuilder()
	for i, id := range ids {
		bld.Add(Practitioner{IDNat: id, FirstName: "JEAN", LastName: "NOM" + strconv.Itoa(i), Professions: []Profession{{"10", "Médecin"}}, Active: true})
	}
	ix := bld.Build()
	// Probe in a scattered order so the benchmark is not a cache-friendly
	// sequential walk.
	probe := make([]string, 1<<16)
	for i := range probe {
		probe[i] = ids[(i*7919)%len(ids)]
	}
	b.Run("Index.Lookup", func(b *testing.B) {
		var found int
		for i := 0; b.Loop(); i++ {
			if _, ok := ix.Lookup(probe[i&(len(probe)-1)]); ok {
				found++
			}
		}
		if found == 0 {
			b.Fatal("nothing found")
		}
	})
	b.Run("Index.Lookup-miss", func(b *testing.B) {
		miss := IDNatFromRPPS(withCheckDigit(b, "2000000000"))
		for b.Loop() {
			if _, ok := ix.Lookup(miss); ok {
				b.Fatal("found")
			}
		}
	})
	// The two key choices, each map built alone in the same way, so only the
	// key type differs.
	b.Run("alt-uint64-key", func(b *testing.B) {
		m := make(map[uint64]uint32, len(ids))
		for i, id := range ids {
			k, _ := idKey(id)
			m[k] = uint32(i)
		}
		var found int
		for i := 0; b.Loop(); i++ {
			k, ok := idKey(probe[i&(len(probe)-1)])
			if _, hit := m[k]; ok && hit {
				found++
			}
		}
		if found == 0 {
			b.Fatal("nothing found")
		}
	})
	b.Run("alt-string-key", func(b *testing.B) {
		m := make(map[string]uint32, len(ids))
		for i, id := range ids {
			m[id] = uint32(i)
		}
		var found int
		for i := 0; b.Loop(); i++ {
			if _, ok := m[probe[i&(len(probe)-1)]]; ok {
				found++
			}
		}
		if found == 0 {
			b.Fatal("nothing found")
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var a Atomic
		a.Swap(ix)
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				a.Load().Lookup(probe[i&(len(probe)-1)])
				i++
			}
		})
	})
}

func BenchmarkSearch(b *testing.B) {
	ids := benchIDNats(b, 200_000)
	bld := NewIndexBuilder()
	firsts := []string{"JEAN", "MARIE", "PIERRE", "ANNE", "LUC", "SOPHIE", "PAUL", "CLAIRE"}
	for i, id := range ids {
		bld.Add(Practitioner{IDNat: id, FirstName: firsts[i%len(firsts)], LastName: "NOM" + strconv.Itoa(i), Professions: []Profession{{"10", "Médecin"}}, Active: true})
	}
	ix := bld.Build()
	for _, q := range []string{"nom12345", "marie nom1234", "nom99"} {
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				if len(ix.Search(q, 20)) == 0 {
					b.Fatal("no result")
				}
			}
		})
	}
}

// writeBenchExtract writes rows rows in the published format, with the field
// widths of real rows (about 360 bytes a row); every third person has a
// second activity.
func writeBenchExtract(b *testing.B, path string, rows int) (people int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(header + "\n")
	var line []byte
	serial := 0
	for r := 0; r < rows; {
		serial++
		people++
		rpps := withCheckDigit(b, fmt.Sprintf("1%09d", serial))
		n := 1
		if serial%3 == 0 {
			n = 2
		}
		for k := 0; k < n && r < rows; k++ {
			r++
			line = line[:0]
			line = fmt.Appendf(line, "8|%s|8%s|DR|Docteur|M|Monsieur|NOMDEFAMILLE%d|PRÉNOM%d|10|Médecin|C|Civil|S|Spécialité ordinale|SM54|Médecine générale|S|Salarié|",
				rpps, rpps, serial, serial%997)
			line = fmt.Appendf(line, "%014d|%09d|%09d|%09d|R%011d|CENTRE HOSPITALIER DE LA VILLE NUMÉRO %d|ENSEIGNE %d|",
				serial*10+k, serial, 750000000+k, 750000000+k, serial*2+k, k, k)
			line = fmt.Appendf(line, "SERVICE DE MÉDECINE||%d||R|Rue|DES ÉRABLES ET DES TILLEULS||75012 PARIS|75012|75112|PARIS|99000|France|0142000000|||secretariat%d@example.invalid|75|Paris|1R%011d|ARS/ARS/ARS|SA01|Établissement public de santé|||\n",
				k+1, serial, serial)
			w.Write(line)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return people
}

// BenchmarkReadExtract reads a generated 2,000,000-row extract and reports
// rows/s and the peak heap in use while reading (sampled every millisecond
// through runtime/metrics, which does not stop the world).
func BenchmarkReadExtract(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a ~700 MB file")
	}
	const rows = 2_000_000
	path := filepath.Join(b.TempDir(), "PS_LibreAcces_Personne_activite_bench.txt")
	people := writeBenchExtract(b, path, rows)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())

	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heapNow := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	var peakAll uint64
	var elapsed time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		base := heapNow()
		var peak atomic.Uint64
		done := make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					if h := heapNow(); h > peak.Load() {
						peak.Store(h)
					}
				}
			}
		}()
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		var n int
		rep, err := ReadExtract(context.Background(), f, ReadOptions{MaxBadRows: 1}, func(p Practitioner) error {
			n++
			return nil
		})
		elapsed += time.Since(start)
		b.StopTimer()
		f.Close()
		close(done)
		<-stopped
		if err != nil || rep.Rows != rows || rep.People != people || n != people {
			b.Fatalf("err %v, report %+v, want %d people", err, rep, people)
		}
		if p := peak.Load(); p > base && p-base > peakAll {
			peakAll = p - base
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(st.Size())/rows, "bytes/row")
	b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(peakAll)/(1<<20), "peak-heap-MB")
}
