package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

var serverKeyTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ServerKeys", testServerKeys},
}

// Keys accumulate (old ones are kept to verify old events), a known key
// keeps its public key, its validity only grows, and the last response is
// kept byte for byte.
func testServerKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, _, err := s.ServerKeyResponse(ctx, "a.test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("response of an unknown server: %v", err)
	}
	if keys, err := s.ServerKeys(ctx, "a.test"); err != nil || len(keys) != 0 {
		t.Fatalf("keys of an unknown server: %v %v", keys, err)
	}
	t1 := time.Date(2026, 3, 1, 10, 0, 0, 123e6, time.UTC)
	resp1 := []byte(`{"server_name":"a.test","valid_until_ts":1}`)
	if err := s.PutServerKeys(ctx, "a.test", []store.ServerKey{
		{ServerName: "a.test", KeyID: "ed25519:one", PublicKey: "PUB1", ValidUntil: t1},
	}, resp1, t1); err != nil {
		t.Fatal(err)
	}
	// Rotation: one becomes old, two is current; a forged republication
	// of one with another public key and a shorter validity changes
	// neither.
	t2 := t1.Add(24 * time.Hour)
	resp2 := []byte(`{"server_name":"a.test","valid_until_ts":2}`)
	if err := s.PutServerKeys(ctx, "a.test", []store.ServerKey{
		{ServerName: "a.test", KeyID: "ed25519:two", PublicKey: "PUB2", ValidUntil: t2},
		{ServerName: "a.test", KeyID: "ed25519:one", PublicKey: "FORGED", ValidUntil: t1.Add(-time.Hour), ExpiredAt: t1},
	}, resp2, t2); err != nil {
		t.Fatal(err)
	}
	if err := s.PutServerKeys(ctx, "b.test", []store.ServerKey{
		{ServerName: "b.test", KeyID: "ed25519:one", PublicKey: "PUBB", ValidUntil: t2},
	}, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.ServerKeys(ctx, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys: %+v", keys)
	}
	one, two := keys[0], keys[1]
	if one.KeyID != "ed25519:one" || one.PublicKey != "PUB1" || !one.ValidUntil.Equal(t1) || !one.ExpiredAt.Equal(t1) {
		t.Errorf("old key: %+v", one)
	}
	if two.KeyID != "ed25519:two" || two.PublicKey != "PUB2" || !two.ValidUntil.Equal(t2) || !two.ExpiredAt.IsZero() {
		t.Errorf("new key: %+v", two)
	}
	got, valid, err := s.ServerKeyResponse(ctx, "a.test")
	if err != nil || string(got) != string(resp2) || !valid.Equal(t2) {
		t.Errorf("response: %s %v %v", got, valid, err)
	}
	if _, _, err := s.ServerKeyResponse(ctx, "b.test"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b.test has a response: %v", err)
	}
}
