// Command eimis-bench is a load generator for Matrix homeservers. It speaks
// only the Client-Server API over HTTP, so the same run can be pointed at
// EIMIS hub, Synapse or Dendrite and the reports compared side by side. Run
// it with --help for the flags and the standard scenarios.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Exit statuses, so scripts can tell a broken server from a broken run.
const (
	exitOK        = 0
	exitLossOrDup = 1
	exitUsage     = 2
	exitSetup     = 3
)

const usageHeader = `eimis-bench: load generator for Matrix homeservers.

It registers users, puts them in rooms, keeps a /sync long-poll running for
every room member, sends messages and measures how quickly the server
accepts them and how quickly (and whether, and how often) each one reaches
every member. Only the Client-Server API is used, over plain HTTP, so the
same command can be run against EIMIS hub, Synapse and Dendrite.

Usage:
  eimis-bench [flags]

Phases: register users (logging in instead if they already exist), create
rooms and join them, bring every member's /sync loop up to date, send the
load, wait up to --drain for outstanding deliveries, print the report.

Load models:
  --rate E (E > 0)  Open loop. Message n is due at start + n/E whatever the
                    server's response times; a send that leaves late (in-flight
                    cap reached, generator behind) is timed from when it was
                    due, so a stalling server shows up as latency instead of
                    as a quietly reduced load (no coordinated omission).
  --rate 0          Closed loop. --concurrency senders each send again as
                    soon as their previous send returns: the throughput the
                    server sustains at that concurrency.
  Messages go to the rooms round-robin; the sender is a pseudo-random member.

Latencies (milliseconds):
  send      from the scheduled time to the end of the PUT response
  delivery  from the scheduled time until a member's /sync returned the
            message, over every (message, receiving member) pair
  own echo  the same for the sender's own copy

Standard scenarios:
  (a) one message at a time between two users (pure per-message latency):
      eimis-bench --users 2 --rooms 1 --members 2 --rate 0 --concurrency 1 --messages 2000
  (b) 200 two-person rooms at a fixed 1000 messages/s:
      eimis-bench --users 400 --rooms 200 --members 2 --rate 1000 --duration 30s
  (c) maximum sustained rate, with 64 closed-loop senders:
      eimis-bench --users 400 --rooms 200 --members 2 --rate 0 --concurrency 64 --duration 30s
      or by stepping an open-loop rate up until the p99 objective breaks:
      eimis-bench --users 400 --rooms 200 --members 2 --ramp 250,500,1000,2000,4000 --duration 20s --ramp-p99 500ms

Accounts: with --shared-secret users are created through Synapse's
shared-secret admin API (/_synapse/admin/v1/register); otherwise through open registration (m.login.dummy). Either way an
existing user (M_USER_IN_USE) is logged in with --password instead, so a
rerun with the same --user-prefix reuses its accounts. Rooms are always new.

Server preparation: the bench sends far faster than any person, so the
server's per-user rate limits must be raised or disabled first, or most
sends are refused with 429 (Synapse: rc_message, rc_registration, rc_login,
rc_joins). Failed sends are reported by status and kept out of the latency
figures.

Exit status: 0 all accepted messages delivered exactly once to every member;
1 some were lost or duplicated (the sender's own echo included); 2 bad
flags; 3 setup failed (registration, rooms, initial sync).

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first interrupt stops the load and still prints a report;
		// restoring the default lets a second one kill the process.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func randomLetters(n int) string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	x := binary.LittleEndian.Uint64(b[:])
	out := make([]byte, n)
	for i := range out {
		out[i] = byte('a' + x%26)
		x /= 26
	}
	return string(out)
}

func randomSeed() uint64 {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}

func parseFlags(args []string, stdout, stderr io.Writer) (config, int, bool) {
	var cfg config
	var ramp string
	fs := flag.NewFlagSet("eimis-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.hs, "hs", "http://127.0.0.1:8008", "homeserver base URL")
	fs.StringVar(&cfg.sharedSecret, "shared-secret", "", "registration shared secret; register users via /_synapse/admin/v1/register instead of open registration")
	fs.IntVar(&cfg.idnatBase, "idnat-base", 0, "health hubs: user i is the synthetic practitioner @8<RPPS>, RPPS = 19 + serial (base+i) + check digit, as `eimis-hub directory synth --start base` writes them (0: use --user-prefix)")
	fs.StringVar(&cfg.userPrefix, "user-prefix", "", "localpart prefix; user i is <prefix><i> (default \"bench\" + 4 random letters, so reruns do not collide)")
	fs.StringVar(&cfg.password, "password", "eimis-bench-not-a-secret", "password for the bench users (used to log in when they already exist)")
	fs.IntVar(&cfg.users, "users", 2, "number of users")
	fs.IntVar(&cfg.rooms, "rooms", 1, "number of rooms")
	fs.IntVar(&cfg.members, "members", 2, "members per room (>= 2, <= --users); users are dealt to rooms round-robin")
	fs.Float64Var(&cfg.rate, "rate", 0, "target messages/s, open loop; 0 = closed loop with --concurrency senders")
	fs.IntVar(&cfg.concurrency, "concurrency", 16, "closed-loop senders (with --rate 0)")
	fs.IntVar(&cfg.maxInflight, "max-inflight", 4096, "open loop: cap on sends in flight; beyond it sends start late and the wait counts as latency")
	fs.DurationVar(&cfg.duration, "duration", 0, "measured load duration (after --warmup); default 30s unless --messages is given")
	fs.Int64Var(&cfg.messages, "messages", 0, "measured messages to send in total (after --warmup); with --duration, whichever ends first")
	fs.DurationVar(&cfg.warmup, "warmup", 0, "load sent before measuring starts; checked for loss/duplication but kept out of latency and throughput")
	fs.DurationVar(&cfg.drain, "drain", 10*time.Second, "after the load, wait at most this long for outstanding deliveries")
	fs.BoolVar(&cfg.json, "json", false, "print the report as JSON on stdout (with --ramp: {p99_objective_ms, max_sustained_rate, steps: [report...]})")
	fs.BoolVar(&cfg.quiet, "quiet", false, "no progress messages on stderr")
	fs.BoolVar(&cfg.insecure, "insecure", false, "skip TLS certificate verification (self-signed test deployments)")
	fs.IntVar(&cfg.setupConcurrency, "setup-concurrency", 16, "parallel requests while registering, creating rooms, joining and initial syncing")
	fs.DurationVar(&cfg.requestTimeout, "request-timeout", 30*time.Second, "timeout of every request except the /sync long-poll (which gets --sync-timeout on top)")
	fs.DurationVar(&cfg.syncTimeout, "sync-timeout", 30*time.Second, "/sync long-poll timeout sent to the server")
	fs.IntVar(&cfg.timelineLimit, "timeline-limit", 100, "timeline limit in the /sync filter; fuller timelines come back limited and are back-filled with /messages")
	fs.StringVar(&cfg.syncFilter, "sync-filter", "", "/sync filter (inline JSON or a filter ID) replacing the default, which keeps only timelines of --timeline-limit events")
	var seed uint64
	fs.Uint64Var(&seed, "seed", 0, "seed for choosing senders (0 = random); the same seed picks the same senders")
	fs.StringVar(&ramp, "ramp", "", "comma-separated open-loop rates run as successive steps (overriding --rate), each for --warmup + --duration/--messages on the same users and rooms, stopping at the first step that does not meet --ramp-p99")
	fs.DurationVar(&cfg.rampP99, "ramp-p99", time.Second, "ramp objective: send and delivery p99 at most this, no failed sends, accepted rate >= 95% of target")
	var bridgeTokens string
	addBridgeFlags(fs, &cfg.bridge, &bridgeTokens)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageHeader, bridgeUsage, "\nFlags (written -flag or --flag):\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return cfg, exitOK, false
		}
		fmt.Fprintln(stderr, "run eimis-bench --help for usage")
		return cfg, exitUsage, false
	}
	fail := func(format string, args ...any) (config, int, bool) {
		fmt.Fprintf(stderr, "eimis-bench: "+format+"\n", args...)
		return cfg, exitUsage, false
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments %q", fs.Args())
	}
	cfg.hs = strings.TrimRight(cfg.hs, "/")
	if !strings.HasPrefix(cfg.hs, "http://") && !strings.HasPrefix(cfg.hs, "https://") {
		return fail("--hs must be an http:// or https:// URL")
	}
	if ramp != "" {
		for _, f := range strings.Split(ramp, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || r <= 0 {
				return fail("--ramp: %q is not a positive rate", f)
			}
			cfg.ramp = append(cfg.ramp, r)
		}
	}
	switch {
	case cfg.rate < 0:
		return fail("--rate must be >= 0")
	case cfg.rate == 0 && len(cfg.ramp) == 0 && cfg.concurrency < 1:
		return fail("--concurrency must be >= 1")
	case cfg.maxInflight < 1:
		return fail("--max-inflight must be >= 1")
	case cfg.duration < 0 || cfg.messages < 0 || cfg.warmup < 0 || cfg.drain < 0:
		return fail("durations and --messages must not be negative")
	case cfg.setupConcurrency < 1:
		return fail("--setup-concurrency must be >= 1")
	case cfg.timelineLimit < 1:
		return fail("--timeline-limit must be >= 1")
	case cfg.requestTimeout <= 0 || cfg.syncTimeout <= 0:
		return fail("--request-timeout and --sync-timeout must be positive")
	}
	if cfg.duration == 0 && cfg.messages == 0 {
		cfg.duration = 30 * time.Second
	}
	if cfg.userPrefix == "" {
		cfg.userPrefix = "bench" + randomLetters(4)
	}
	cfg.seed = seed
	if cfg.seed == 0 {
		cfg.seed = randomSeed()
	}
	if msg := checkBridgeFlags(&cfg, bridgeTokens); msg != "" {
		return fail("%s", msg)
	}
	if cfg.bridge.mode == "bridge" {
		return cfg, 0, true // --users and --members do not apply
	}
	if _, err := buildTopology(cfg.users, cfg.rooms, cfg.members); err != nil {
		return fail("%v", err)
	}
	return cfg, 0, true
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := parseFlags(args, stdout, stderr)
	if !ok {
		return code
	}
	if cfg.bridge.mode == "bridge" {
		return runBridge(ctx, cfg, stdout, stderr)
	}
	var log io.Writer = stderr
	if cfg.quiet {
		log = nil
	}
	b, err := newBench(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "eimis-bench:", err)
		return exitUsage
	}
	if cfg.users > cfg.rooms*cfg.members {
		b.logf("note: %d of %d users are in no room and stay idle", cfg.users-cfg.rooms*cfg.members, cfg.users)
	}
	stopSync, err := b.setup(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "eimis-bench: setup failed:", err)
		return exitSetup
	}
	runID := randomLetters(8)

	if len(cfg.ramp) == 0 {
		rep := b.phase(ctx, runID, cfg.rate)
		stopSync()
		if cfg.json {
			_ = writeJSON(stdout, rep)
		} else {
			rep.writeText(stdout)
		}
		if !rep.OK {
			return exitLossOrDup
		}
		return exitOK
	}

	rr := &RampReport{P99ObjectiveMs: ms(cfg.rampP99)}
	allOK := true
	for i, rate := range cfg.ramp {
		if ctx.Err() != nil {
			break
		}
		rep := b.phase(ctx, fmt.Sprintf("%s-%d", runID, i+1), rate)
		ok := sustained(rep, cfg.rampP99)
		rep.Sustained = &ok
		rr.Steps = append(rr.Steps, rep)
		allOK = allOK && rep.OK
		if !ok {
			break
		}
		rr.MaxSustainedRate = rate
	}
	stopSync()
	if cfg.json {
		_ = writeJSON(stdout, rr)
	} else {
		rr.writeText(stdout)
	}
	if !allOK {
		return exitLossOrDup
	}
	return exitOK
}
