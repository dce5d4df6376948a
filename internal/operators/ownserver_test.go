package operators

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestOwnServerNameRefused: no operator may claim the hub's own server
// name (on any port), and nothing is stored when one tries.
func TestOwnServerNameRefused(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	reg := New(st, nil)
	if err := reg.Load(ctx); err != nil {
		t.Fatal(err)
	}
	reg.SetOwnServerNames("hub.example")
	for i, c := range []struct {
		name    string
		servers []string
		refused bool
	}{
		{"the hub's name", []string{"hub.example"}, true},
		{"the hub's host on another port", []string{"hub.example:8448"}, true},
		{"among others", []string{"acme.example", "hub.example"}, true},
		{"a subdomain is another server", []string{"matrix.hub.example"}, false},
		{"another server", []string{"acme2.example"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("op%d", i)
			_, err := reg.Add(ctx, Operator{ID: id, Name: "Op", ServerNames: c.servers, Contact: "sec@op.example"}, "test")
			var ve *ValidationError
			if !c.refused {
				if err != nil {
					t.Fatalf("add: %v", err)
				}
				return
			}
			if !errors.As(err, &ve) || ve.Field != FieldServerNames || !strings.Contains(ve.Reason, "own server name") {
				t.Fatalf("add: %v, want a server_names validation error", err)
			}
			if _, err := reg.Get(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a refused operator was stored: %v", err)
			}
			if _, err := reg.CheckServer(c.servers[len(c.servers)-1]); err == nil {
				t.Fatal("the hub's own name passes the allow-list")
			}
		})
	}
}

// Loopback test peers share 127.0.0.1: another port there is another
// server, but the hub's own name and a bare loopback host stay refused.
func TestOwnServerNameLoopbackPorts(t *testing.T) {
	ctx := t.Context()
	reg := New(openStore(t), nil)
	if err := reg.Load(ctx); err != nil {
		t.Fatal(err)
	}
	reg.SetOwnServerNames("127.0.0.1:8448")
	for i, c := range []struct {
		server  string
		refused bool
	}{
		{"127.0.0.1:8449", false},
		{"127.0.0.1:8448", true},
		{"127.0.0.1", true},
	} {
		_, err := reg.Add(ctx, Operator{ID: fmt.Sprintf("lo%d", i), Name: "Op", ServerNames: []string{c.server}, Contact: "sec@op.example"}, "test")
		if (err != nil) != c.refused {
			t.Errorf("%s: %v, refused want %v", c.server, err, c.refused)
		}
	}
}
