package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// runBench runs the command against srv and decodes its JSON report.
func runBench(t *testing.T, url string, args ...string) (int, *Report, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--hs", url, "--json", "--sync-timeout", "2s", "--seed", "7"}, args...)
	code := run(context.Background(), args, &stdout, &stderr)
	if code != exitOK && code != exitLossOrDup {
		return code, nil, stderr.String()
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decoding report: %v\n%s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	return code, &rep, stderr.String()
}

func startFake(t *testing.T, f *fakeHS) string {
	srv := httptest.NewServer(f.handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestBenchClosedLoopClean(t *testing.T) {
	f := newFakeHS()
	url := startFake(t, f)
	code, rep, logs := runBench(t, url, "--users", "4", "--rooms", "2", "--members", "2",
		"--rate", "0", "--concurrency", "3", "--messages", "60", "--drain", "30s")
	if code != exitOK || rep == nil {
		t.Fatalf("exit %d, report %+v\n%s", code, rep, logs)
	}
	if rep.Mode != "closed-loop" || rep.Sends.Attempted != 60 || rep.Sends.Accepted != 60 || rep.Sends.Failed != 0 {
		t.Errorf("sends = %+v (mode %s)", rep.Sends, rep.Mode)
	}
	want := Deliveries{Expected: 60, Delivered: 60, EchoExpected: 60, EchoDelivered: 60}
	if rep.Deliveries != want {
		t.Errorf("deliveries = %+v, want %+v", rep.Deliveries, want)
	}
	if rep.SendLatency.Count != 60 || rep.DeliveryLatency.Count != 60 || rep.EchoLatency.Count != 60 {
		t.Errorf("sample counts send/delivery/echo = %d/%d/%d, want 60 each",
			rep.SendLatency.Count, rep.DeliveryLatency.Count, rep.EchoLatency.Count)
	}
	if !rep.OK || rep.Sync.Loops != 4 || rep.Server != "fakehs 0" {
		t.Errorf("ok %v, sync %+v, server %q", rep.OK, rep.Sync, rep.Server)
	}
	if got := f.count(func() int { return f.sends }); got != 60 {
		t.Errorf("server stored %d messages, want 60", got)
	}
}

func TestBenchOpenLoopWithWarmupAndText(t *testing.T) {
	f := newFakeHS()
	url := startFake(t, f)
	// Text output this time; the exit status carries the verdict. Warmup
	// is judged by the timetable, so at 500/s a 20ms warmup is exactly
	// the 10 sends due at 0, 2, ..., 18ms; they are checked for delivery
	// like the 50 measured ones.
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--hs", url, "--users", "3", "--rooms", "1", "--members", "3",
		"--rate", "500", "--messages", "50", "--warmup", "20ms", "--drain", "30s", "--sync-timeout", "2s", "--quiet"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"open loop at 500 msg/s", "attempted 50", "warmup: attempted 10", "expected 120", "lost 0",
		"result", "OK", "MaxIdleConnsPerHost", "start lag"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("--quiet still logged: %s", stderr.String())
	}
}

func TestBenchDetectsLoss(t *testing.T) {
	f := newFakeHS()
	f.drop = func(user string, seq int64) bool { return strings.Contains(user, "loss1:") && seq%10 == 3 }
	url := startFake(t, f)
	// The drain always runs out here, so keep it short; losses are
	// permanent, so its length does not change the counts.
	code, rep, logs := runBench(t, url, "--user-prefix", "loss", "--users", "2", "--rooms", "1", "--members", "2",
		"--rate", "0", "--concurrency", "2", "--messages", "30", "--drain", "2s")
	if code != exitLossOrDup || rep == nil || rep.OK {
		t.Fatalf("exit %d, want %d; report %+v\n%s", code, exitLossOrDup, rep, logs)
	}
	d := rep.Deliveries
	// seqs 3, 13, 23 never reach user 1, whether as receiver or as sender.
	if d.Lost+d.EchoLost != 3 || d.Duplicated+d.EchoDuplicated != 0 {
		t.Errorf("deliveries = %+v, want 3 lost pairs in all", d)
	}
	if d.Expected != 30 || d.Delivered != 30-d.Lost {
		t.Errorf("deliveries = %+v", d)
	}
}

func TestBenchDetectsDuplicates(t *testing.T) {
	f := newFakeHS()
	f.dup = func(user string, seq int64) bool { return strings.Contains(user, "dup0:") && seq == 7 }
	url := startFake(t, f)
	code, rep, logs := runBench(t, url, "--user-prefix", "dup", "--users", "2", "--rooms", "1", "--members", "2",
		"--rate", "0", "--concurrency", "1", "--messages", "20", "--drain", "30s")
	if code != exitLossOrDup || rep == nil || rep.OK {
		t.Fatalf("exit %d, want %d; report %+v\n%s", code, exitLossOrDup, rep, logs)
	}
	d := rep.Deliveries
	if d.Duplicated+d.EchoDuplicated != 1 || d.Lost+d.EchoLost != 0 {
		t.Errorf("deliveries = %+v, want exactly one duplicated pair", d)
	}
}

// Every member's first sync after the load carries all 40 messages against
// a timeline limit of 3, so 37 per member must come from /messages.
func TestBenchBackfillsLimitedSyncs(t *testing.T) {
	f := newFakeHS()
	f.timelineLimit = 3
	f.holdSyncUntil = 40
	url := startFake(t, f)
	code, rep, logs := runBench(t, url, "--users", "2", "--rooms", "1", "--members", "2",
		"--rate", "0", "--concurrency", "4", "--messages", "40", "--drain", "30s", "--timeline-limit", "3")
	if code != exitOK || rep == nil {
		t.Fatalf("exit %d, report %+v\n%s", code, rep, logs)
	}
	if rep.Sync.Limited != 2 || rep.Sync.GapsUnresolved != 0 || rep.Deliveries.GapRecovered != 2*37 {
		t.Errorf("sync %+v, recovered %d; want 2 limited timelines, 74 recovered, none unresolved",
			rep.Sync, rep.Deliveries.GapRecovered)
	}
	if d := rep.Deliveries; d.Lost != 0 || d.Duplicated != 0 || d.Delivered != 40 || d.EchoDelivered != 40 {
		t.Errorf("deliveries = %+v", d)
	}
}

func TestBenchSharedSecretAndRerun(t *testing.T) {
	f := newFakeHS()
	f.secret = "s3cret"
	url := startFake(t, f)
	args := []string{"--shared-secret", "s3cret", "--user-prefix", "again", "--users", "2", "--rooms", "1",
		"--members", "2", "--rate", "0", "--concurrency", "1", "--messages", "5", "--drain", "30s"}
	for i := range 2 {
		// The second run finds the users taken and must log in.
		code, rep, logs := runBench(t, url, args...)
		if code != exitOK || rep == nil || rep.Deliveries.Delivered != 5 {
			t.Fatalf("run %d: exit %d, report %+v\n%s", i+1, code, rep, logs)
		}
	}
	if f.count(func() int { return len(f.users) }) != 2 {
		t.Errorf("%v: want the 2 users reused", f)
	}

	code, _, logs := runBench(t, url, "--shared-secret", "wrong", "--messages", "1")
	if code != exitSetup || !strings.Contains(logs, "403") {
		t.Errorf("wrong secret: exit %d, want %d\n%s", code, exitSetup, logs)
	}
}

// A URL that is not a homeserver fails at once rather than after the
// setup retries.
func TestBenchNotAHomeserver(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	code, _, logs := runBench(t, srv.URL, "--messages", "1")
	if code != exitSetup || !strings.Contains(logs, "does not answer as a Matrix homeserver") {
		t.Errorf("exit %d, want %d\n%s", code, exitSetup, logs)
	}
}

func TestBenchRamp(t *testing.T) {
	f := newFakeHS()
	url := startFake(t, f)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--hs", url, "--json", "--quiet", "--sync-timeout", "2s",
		"--ramp", "200,400", "--messages", "20", "--drain", "30s"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var rr RampReport
	if err := json.Unmarshal(stdout.Bytes(), &rr); err != nil {
		t.Fatal(err)
	}
	// Whether a step meets the objective depends on timing; that every
	// step ran under its own run ID and lost nothing does not.
	if len(rr.Steps) == 0 || len(rr.Steps) > 2 || rr.P99ObjectiveMs != 1000 {
		t.Fatalf("ramp report %+v", rr)
	}
	for i, s := range rr.Steps {
		if !s.OK || s.Sustained == nil || s.Deliveries.Delivered != 20 || s.Mode != "open-loop" || !strings.HasSuffix(s.Run, fmt.Sprintf("-%d", i+1)) {
			t.Errorf("step %d: %+v", i+1, s)
		}
	}
}

func TestFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != exitOK {
		t.Errorf("--help exit %d", code)
	}
	for _, want := range []string{
		"--users 2 --rooms 1 --members 2 --rate 0 --concurrency 1 --messages 2000",
		"--users 400 --rooms 200 --members 2 --rate 1000 --duration 30s",
		"--rate 0 --concurrency 64 --duration 30s",
		"-shared-secret", "-ramp", "-drain", "-json",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	for _, bad := range [][]string{
		{"--members", "1"},
		{"--users", "2", "--members", "3"},
		{"--rate", "-1"},
		{"--ramp", "100,x"},
		{"--hs", "ftp://x"},
		{"--nope"},
	} {
		if code := run(context.Background(), bad, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitUsage)
		}
	}
}
