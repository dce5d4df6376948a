package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/eimis-hub/eimis/bridges/gateway"
	hubconfig "github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/operators"
)

// startBridgeHub runs a real hub with two operators, each with one bridge,
// and returns it with the bridges' tokens joined as --bridge-tokens wants.
func startBridgeHub(t *testing.T) (*hubtest.Hub, string) {
	t.Helper()
	// Synthetic practitioners cannot type link codes: the bench binds
	// under the insecure option, as scripts/bench-bridge.sh runs the hub.
	h := hubtest.Start(t, hubtest.Options{Configure: func(c *hubconfig.Config) { c.BridgeBindWithoutConsentInsecure = true }})
	ctx := context.Background()
	var tokens []string
	for _, op := range []string{"vendora", "vendorb"} {
		if _, err := h.Operators.Add(ctx, operators.Operator{ID: op, Name: op, ServerNames: []string{op + ".example"},
			Contact: "security@" + op + ".example"}, "test"); err != nil {
			t.Fatal(err)
		}
		tok, _, err := gateway.AddBridge(ctx, h.Store, op+"-app", op)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	return h, strings.Join(tokens, ",")
}

// hubtest's directory lists user0…user499 as serials 1000…1499.
const testIDNatBase = "1000"

func TestBridgeModeAgainstHub(t *testing.T) {
	h, tokens := startBridgeHub(t)
	for _, load := range [][]string{
		{"--rate", "0", "--concurrency", "3", "--messages", "40"},
		{"--rate", "200", "--messages", "30", "--warmup", "20ms"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"--mode", "bridge", "--hs", h.URL, "--bridge-tokens", tokens, "--idnat-base", testIDNatBase,
			"--rooms", "3", "--drain", "30s", "--json"}, load...)
		code := run(context.Background(), args, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", load, code, stdout.String(), stderr.String())
		}
		var rep BridgeReport
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("decoding report: %v\n%s", err, stdout.String())
		}
		n := rep.Sends.Accepted
		d := rep.Deliveries
		if !rep.OK || rep.Sends.Failed != 0 || d.Lost != 0 || d.Duplicated != 0 || d.EchoLost != 0 || d.EchoDuplicated != 0 ||
			d.Unknown != 0 || rep.Misrouted != 0 {
			t.Errorf("%v: not clean: %+v", load, rep)
		}
		// Each room has one user on B: one delivery per message, warmup
		// messages included in the counts, not in the latencies.
		total := n + rep.Sends.WarmupAccepted
		if d.Expected != total || d.Delivered != total || d.EchoDelivered != total {
			t.Errorf("%v: deliveries %+v, want %d of each", load, d, total)
		}
		if rep.DeliveryLatency.Count != int(n) || rep.DeliveryFromSend.Count != int(n) || rep.EchoLatency.Count != int(n) ||
			rep.HubStampToB.Count != int(n) || rep.SendLatency.Count != int(n) {
			t.Errorf("%v: sample counts send %d delivery %d from-send %d stamp %d echo %d, want %d", load, rep.SendLatency.Count,
				rep.DeliveryLatency.Count, rep.DeliveryFromSend.Count, rep.HubStampToB.Count, rep.EchoLatency.Count, n)
		}
		s := rep.DeliveryLatency
		if s.Min <= 0 || s.P50 < s.Min || s.P99 < s.P50 || s.Max < s.P99 || rep.DeliveryFromSend.Max > s.Max {
			t.Errorf("%v: delivery latency not ordered: %+v, from send %+v", load, s, rep.DeliveryFromSend)
		}
		if rep.Rooms != 3 || rep.BoundUsers != 6 || rep.AcceptedPerSec <= 0 {
			t.Errorf("%v: report %+v", load, rep)
		}
	}
	// The text form, once; the rooms and bindings of the runs above are
	// new again for these users (rooms are always new, binding is
	// idempotent).
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--mode", "bridge", "--hs", h.URL, "--bridge-tokens", tokens,
		"--idnat-base", testIDNatBase, "--rooms", "2", "--rate", "0", "--concurrency", "1", "--messages", "5", "--quiet"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("text: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"A->B delivery ms", "deliveries to B", "lost 0  duplicated 0", "result", "OK"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestBridgeModeBindMemory(t *testing.T) {
	h, tokens := startBridgeHub(t)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--mode", "bridge", "--hs", h.URL, "--bridge-tokens", tokens,
		"--idnat-base", testIDNatBase, "--bind-users", "50", "--samples", "1", "--settle", "0s", "--json"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	var rep MemoryReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decoding report: %v\n%s", err, stdout.String())
	}
	if rep.Bound != 50 || rep.Failed != 0 || rep.BindLatency.Count != 50 {
		t.Errorf("binds: %+v", rep)
	}
	if rep.Before.HeapInuse <= 0 || rep.Before.RSS <= 0 || rep.After.HeapInuse <= 0 || rep.After.RSS <= 0 {
		t.Errorf("memory samples: before %+v after %+v", rep.Before, rep.After)
	}
	// A second run binds the same users again: harmless, and the hub
	// says they were bound already.
	stdout.Reset()
	if code := run(context.Background(), []string{"--mode", "bridge", "--hs", h.URL, "--bridge-tokens", tokens,
		"--idnat-base", testIDNatBase, "--bind-users", "50", "--samples", "1", "--settle", "0s", "--json", "--quiet"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("rerun: exit %d\n%s", code, stderr.String())
	}
	rep = MemoryReport{}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.UsersInWelcome != 50 || rep.Bound != 50 {
		t.Errorf("rerun: %d bound before, %d bound", rep.UsersInWelcome, rep.Bound)
	}
}

func TestBridgeFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"--mode bridge", "-bridge-tokens", "-bind-users", "Flags (written -flag or --flag):"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	for _, bad := range [][]string{
		{"--mode", "carrier-pigeon"},
		{"--mode", "bridge"},
		{"--mode", "bridge", "--bridge-tokens", "onlyone"},
		{"--mode", "bridge", "--bridge-tokens", "a,b", "--ramp", "1,2"},
		{"--mode", "bridge", "--bridge-tokens", "a", "--bind-users", "-1"},
		{"--mode", "bridge", "--bridge-tokens", "a,b", "--rooms", "0"},
	} {
		if code := run(context.Background(), bad, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitUsage)
		}
	}
	if run, seq, ok := parseBridgeBody(bridgeBody("abc", 42)); !ok || run != "abc" || seq != 42 {
		t.Errorf("body round trip: %q %d %v", run, seq, ok)
	}
	for _, body := range []string{"hello", "eimis-bench abc", "eimis-bench abc x"} {
		if _, _, ok := parseBridgeBody(body); ok {
			t.Errorf("%q parsed as a bench body", body)
		}
	}
}
