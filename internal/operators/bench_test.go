package operators

import (
	"context"
	"fmt"
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

// listStore serves a fixed allow-list: the benchmarks measure the checks,
// not a database.
type listStore struct {
	store.OperatorStore
	ops []store.Operator
}

func (l listStore) ListOperators(context.Context) ([]store.Operator, error) { return l.ops, nil }

// benchRegistry loads n operators of two servers each; one in ten is
// suspended, as a live registry would have a few.
func benchRegistry(b *testing.B, n int) *Registry {
	ops := make([]store.Operator, n)
	for i := range ops {
		ops[i] = store.Operator{
			ID:          fmt.Sprintf("operator-%d", i),
			ServerNames: []string{fmt.Sprintf("matrix.op%d.example", i), fmt.Sprintf("op%d.example:8448", i)},
			Status:      Active,
		}
		if i%10 == 0 {
			ops[i].Status = Suspended
		}
	}
	r := New(listStore{ops: ops}, nil)
	if err := r.Load(b.Context()); err != nil {
		b.Fatal(err)
	}
	return r
}

func BenchmarkCheck(b *testing.B) {
	r := benchRegistry(b, 1000)
	b.Run("accepted", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Check("operator-517"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("refused", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Check("operator-510"); err == nil {
				b.Fatal("suspended operator accepted")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Check("operator-517"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkCheckServer(b *testing.B) {
	r := benchRegistry(b, 1000)
	b.Run("accepted", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.CheckServer("matrix.op517.example"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unknown", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.CheckServer("evil.example"); err == nil {
				b.Fatal("unknown server accepted")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.CheckServer("op517.example:8448"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
