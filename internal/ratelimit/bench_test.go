package ratelimit

import (
	"strconv"
	"testing"
)

// BenchmarkAllow is the cost a limited request pays: one key, the common
// case of a user sending messages.
func BenchmarkAllow(b *testing.B) {
	l := NewLimiter(Rate{PerSecond: 1e9, Burst: 1000}, nil, 0)
	for b.Loop() {
		l.Allow("@810000000017:hub.example.org")
	}
}

// BenchmarkAllowParallel spreads many users over every core.
func BenchmarkAllowParallel(b *testing.B) {
	l := NewLimiter(Rate{PerSecond: 1e9, Burst: 1000}, nil, 0)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "@81000000" + strconv.Itoa(1000+i) + ":hub.example.org"
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i&1023])
			i++
		}
	})
}

// BenchmarkAllowNewKeys is a flood of distinct addresses at the bound.
func BenchmarkAllowNewKeys(b *testing.B) {
	l := NewLimiter(Rate{PerSecond: 1, Burst: 3}, nil, 0)
	i := 0
	for b.Loop() {
		l.Allow(strconv.Itoa(i))
		i++
	}
}
