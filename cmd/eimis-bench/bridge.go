package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/eimis-hub/eimis/bridges/sdk"
	"github.com/eimis-hub/eimis/internal/directory"
)

// The bridge path (--mode bridge): instead of Matrix clients, two vendor
// bridges (app A and app B, each of its own operator) connect to the hub
// through the Bridge Protocol with the Go SDK. Room r has practitioner
// 2r bound on A and practitioner 2r+1 bound on B (synthetic serials from
// --idnat-base); A's user sends, and the bench times each message from A
// (before SendText) to B's OnEvent, identifying it by a nonce in its body.

const bridgeUsage = `
Bridge path (--mode bridge, EIMIS hub only):
  Two bridges connect with the Go SDK (bridges/sdk): --bridge-tokens A,B,
  as printed by 'eimis-hub bridge add' for two operators. The bench binds
  synthetic practitioners without consent: run the hub with
  --bridge-bind-without-consent-insecure (a test hub only). Room r has the
  synthetic practitioner of serial idnat-base+2r bound on A and serial
  idnat-base+2r+1 bound on B; A's user sends, B's OnEvent receives.
  --users and --members are ignored (each room has 2 members).
  Latencies: send (A's SendText round trip), delivery (from the scheduled
  time, which in closed loop is just before SendText, to B's OnEvent),
  delivery from send (from just before SendText: excludes any open-loop
  start lag), own echo (to A's OnEvent), hub stamp to B (from the event's
  origin_server_ts, 1 ms resolution, to B's OnEvent).
  (a) eimis-bench --mode bridge --bridge-tokens A,B --rooms 1 --rate 0 --concurrency 1 --messages 3000
  (b) eimis-bench --mode bridge --bridge-tokens A,B --rooms 200 --rate 1000 --duration 30s
  (c) eimis-bench --mode bridge --bridge-tokens A,B --rooms 200 --rate 0 --concurrency 64 --duration 30s
  Memory: --bind-users N binds N practitioners (serials idnat-base...) on
  the first bridge and reads the hub's /metrics (--metrics-url) before and
  after: heap in use and RSS per bound user. --gc-url (the hub's
  /debug/pprof/heap?gc=1, with EIMIS_PPROF_ADDR) forces a GC before each
  sample.
  (m) eimis-bench --mode bridge --bridge-tokens A --bind-users 100000
`

type bridgeConfig struct {
	mode       string
	tokens     []string
	bindUsers  int
	metricsURL string
	gcURL      string
	settle     time.Duration
	samples    int
}

func addBridgeFlags(fs *flag.FlagSet, bc *bridgeConfig, tokens *string) {
	fs.StringVar(&bc.mode, "mode", "matrix", "matrix: Client-Server API; bridge: the Bridge Protocol between two vendor bridges (see above)")
	fs.StringVar(tokens, "bridge-tokens", "", "bridge mode: tokens of bridge A and bridge B, comma-separated (only A with --bind-users)")
	fs.IntVar(&bc.bindUsers, "bind-users", 0, "bridge mode: instead of sending, bind this many practitioners on bridge A and report the hub's memory per bound user")
	fs.StringVar(&bc.metricsURL, "metrics-url", "", "bridge memory: the hub's Prometheus endpoint (default <hs>/metrics)")
	fs.StringVar(&bc.gcURL, "gc-url", "", "bridge memory: URL fetched before each sample to force a GC on the hub, e.g. http://127.0.0.1:6060/debug/pprof/heap?gc=1")
	fs.DurationVar(&bc.settle, "settle", 5*time.Second, "bridge memory: wait after binding before sampling")
	fs.IntVar(&bc.samples, "samples", 5, "bridge memory: samples (1 s apart) before and after; the minimum is kept")
}

// checkBridgeFlags validates the bridge settings after parsing; "" if fine.
func checkBridgeFlags(cfg *config, tokens string) string {
	bc := &cfg.bridge
	switch bc.mode {
	case "matrix":
		return ""
	case "bridge":
	default:
		return fmt.Sprintf("--mode must be matrix or bridge, not %q", bc.mode)
	}
	for _, t := range strings.Split(tokens, ",") {
		if t = strings.TrimSpace(t); t != "" {
			bc.tokens = append(bc.tokens, t)
		}
	}
	need := 2
	if bc.bindUsers > 0 {
		need = 1
	}
	switch {
	case bc.bindUsers < 0:
		return "--bind-users must not be negative"
	case len(bc.tokens) < need:
		return fmt.Sprintf("--mode bridge needs --bridge-tokens with %d token(s)", need)
	case len(cfg.ramp) > 0:
		return "--ramp is not supported with --mode bridge (use --rate 0 --concurrency N for the maximum rate)"
	case bc.samples < 1:
		return "--samples must be >= 1"
	case bc.bindUsers == 0 && cfg.rooms < 1:
		return "--rooms must be >= 1"
	}
	if cfg.idnatBase <= 0 {
		cfg.idnatBase = 1
	}
	if bc.metricsURL == "" {
		bc.metricsURL = cfg.hs + "/metrics"
	}
	return ""
}

// practitioner is the idNat of synthetic serial n, as `eimis-hub directory
// synth` writes it.
func practitioner(serial int) string {
	return directory.IDNatFromRPPS(directory.SyntheticRPPS(serial))
}

// BridgeReport is one bridge load phase's result.
type BridgeReport struct {
	Run         string `json:"run"`
	Hub         string `json:"hub"`
	Path        string `json:"path"` // "bridge A -> hub -> bridge B"
	Interrupted bool   `json:"interrupted,omitempty"`
	LoadResult
	Rooms      int `json:"rooms"`
	BoundUsers int `json:"bound_users"`
	IDNatBase  int `json:"idnat_base"`

	// From the scheduled time (open loop) or just before SendText
	// (closed loop) to B's OnEvent.
	DeliveryLatency Summary `json:"delivery_latency"`
	// From just before SendText to B's OnEvent, whatever the timetable.
	DeliveryFromSend Summary `json:"delivery_from_send_latency"`
	// From the event's origin_server_ts (ms) to B's OnEvent.
	HubStampToB Summary `json:"hub_stamp_to_b_latency"`
	// A's own copy, at A's OnEvent.
	EchoLatency Summary    `json:"own_echo_latency"`
	Deliveries  Deliveries `json:"deliveries"`
	// Bench messages that came in the wrong room.
	Misrouted   int64 `json:"misrouted"`
	Disconnects int64 `json:"disconnects"`
	OK          bool  `json:"ok"`
}

func (r *BridgeReport) writeText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run %s against %s (%s)", r.Run, r.Hub, r.Path)
	if r.Interrupted {
		fmt.Fprint(tw, " (interrupted)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "topology\t%d rooms x (1 user on A + 1 user on B), %d bound users, idnat base %d\n", r.Rooms, r.BoundUsers, r.IDNatBase)
	r.LoadResult.write(tw)
	fmt.Fprintf(tw, "A->B delivery ms\t%s\n", latencyLine(r.DeliveryLatency))
	fmt.Fprintf(tw, "A->B from send ms\t%s\n", latencyLine(r.DeliveryFromSend))
	fmt.Fprintf(tw, "hub stamp->B ms\t%s\n", latencyLine(r.HubStampToB))
	fmt.Fprintf(tw, "own echo (A) ms\t%s\n", latencyLine(r.EchoLatency))
	d := r.Deliveries
	fmt.Fprintf(tw, "deliveries to B\texpected %d  delivered %d  lost %d  duplicated %d\n", d.Expected, d.Delivered, d.Lost, d.Duplicated)
	fmt.Fprintf(tw, "own echo to A\texpected %d  delivered %d  lost %d  duplicated %d\n", d.EchoExpected, d.EchoDelivered, d.EchoLost, d.EchoDuplicated)
	fmt.Fprintf(tw, "anomalies\tdelivered without ack %d  unknown %d  misrouted %d  disconnects %d\n", d.DeliveredWithoutAck, d.Unknown, r.Misrouted, r.Disconnects)
	fmt.Fprintf(tw, "drain\t%.2fs\n", r.DrainS)
	verdict := "OK"
	if !r.OK {
		verdict = "FAIL: messages lost, duplicated or misrouted"
	}
	fmt.Fprintf(tw, "result\t%s\n", verdict)
	tw.Flush()
}

// bridgeMsg is what the bench knows of one message.
type bridgeMsg struct {
	room               int32
	scheduled, started time.Duration
	warmup             bool
	state              msgStatus
	recv               [2]int32
}

const (
	sideB = 0 // the receiving bridge
	sideA = 1 // the sender's own echo
)

// bridgeTracker follows one phase's messages. One mutex: it is held for a
// map access and an append, far shorter than a request to the hub.
type bridgeTracker struct {
	run string
	mu  sync.Mutex
	// Pairs (message, side) sent or in flight and not yet received.
	outstanding int64
	msgs        map[int64]*bridgeMsg
	delivery    []time.Duration
	fromSend    []time.Duration
	hubStamp    []time.Duration
	echo        []time.Duration
	unknown     int64
	misrouted   int64
}

func newBridgeTracker(run string) *bridgeTracker {
	return &bridgeTracker{run: run, msgs: map[int64]*bridgeMsg{}}
}

func (t *bridgeTracker) begin(seq int64, room int32, scheduled, started time.Duration, warmup bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.msgs[seq] = &bridgeMsg{room: room, scheduled: scheduled, started: started, warmup: warmup}
	t.outstanding += 2
}

func (t *bridgeTracker) finish(seq int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.msgs[seq]
	if ok {
		m.state = msgAccepted
		return
	}
	m.state = msgFailed
	for _, n := range m.recv {
		if n == 0 {
			t.outstanding--
		}
	}
}

// received books a copy of message seq seen by side at now. wall is the
// receipt's wall-clock time and stamp the event's origin_server_ts.
func (t *bridgeTracker) received(side int, seq int64, room int32, now time.Duration, wall, stamp time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.msgs[seq]
	if m == nil {
		t.unknown++
		return
	}
	if m.room != room {
		t.misrouted++
		return
	}
	m.recv[side]++
	if m.recv[side] > 1 {
		return
	}
	if m.state != msgFailed {
		t.outstanding--
	}
	if m.warmup {
		return
	}
	if side == sideA {
		t.echo = append(t.echo, now-m.scheduled)
		return
	}
	t.delivery = append(t.delivery, now-m.scheduled)
	t.fromSend = append(t.fromSend, now-m.started)
	t.hubStamp = append(t.hubStamp, max(wall.Sub(stamp), 0))
}

func (t *bridgeTracker) pending() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.outstanding
}

func (t *bridgeTracker) tally() Deliveries {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := Deliveries{Unknown: t.unknown}
	for _, m := range t.msgs {
		switch m.state {
		case msgAccepted:
			d.Expected++
			d.EchoExpected++
			if m.recv[sideB] > 0 {
				d.Delivered++
				d.Duplicated += int64(m.recv[sideB] - 1)
			} else {
				d.Lost++
			}
			if m.recv[sideA] > 0 {
				d.EchoDelivered++
				d.EchoDuplicated += int64(m.recv[sideA] - 1)
			} else {
				d.EchoLost++
			}
		default:
			if m.recv[sideB] > 0 || m.recv[sideA] > 0 {
				d.DeliveredWithoutAck++
			}
		}
	}
	return d
}

// bridgeBody is the text of message seq of run; parseBridgeBody reverses it.
func bridgeBody(run string, seq int64) string {
	return "eimis-bench " + run + " " + strconv.FormatInt(seq, 10)
}

func parseBridgeBody(body string) (run string, seq int64, ok bool) {
	rest, ok := strings.CutPrefix(body, "eimis-bench ")
	if !ok {
		return "", 0, false
	}
	run, num, ok := strings.Cut(rest, " ")
	if !ok {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(num, 10, 64)
	return run, seq, err == nil
}

type bridgeBench struct {
	cfg   config
	clock realClock
	log   io.Writer

	clients     [2]*sdk.Client // A, B
	stop        context.CancelFunc
	runDone     sync.WaitGroup
	disconnects atomic.Int64
	usersA      []string
	usersB      []string
	rooms       []sdk.RoomID
	roomIndex   map[sdk.RoomID]int32
	joinsSeenB  atomic.Int64

	mu       sync.RWMutex
	trackers map[string]*bridgeTracker
}

func (b *bridgeBench) logf(format string, args ...any) {
	if b.log != nil {
		fmt.Fprintf(b.log, "eimis-bench: "+format+"\n", args...)
	}
}

func (b *bridgeBench) onEvent(side int) func(ctx context.Context, ev *sdk.Event) error {
	return func(_ context.Context, ev *sdk.Event) error {
		now := b.clock.Now()
		wall := time.Now()
		if ev.Type == "m.room.member" {
			if m, ok := ev.Membership(); ok && side == sideB && m.Membership == "join" && ev.Sender == m.User {
				b.joinsSeenB.Add(1)
			}
			return nil
		}
		m, ok := ev.Message()
		if !ok {
			return nil
		}
		run, seq, ok := parseBridgeBody(m.Body)
		if !ok {
			return nil
		}
		b.mu.RLock()
		tr := b.trackers[run]
		room, known := b.roomIndex[ev.RoomID]
		b.mu.RUnlock()
		if tr == nil {
			return nil // an earlier run's
		}
		if !known {
			room = -1
		}
		tr.received(side, seq, room, now, wall, ev.Timestamp)
		return nil
	}
}

// connect starts the bridges' connections and waits for them.
func (b *bridgeBench) connect(ctx context.Context, n int) error {
	runCtx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	errs := make(chan error, n)
	for i := range n {
		c, err := sdk.New(sdk.Config{
			URL: b.cfg.hs, Token: b.cfg.bridge.tokens[i], Client: "eimis-bench",
			OnEvent:        b.onEvent(i ^ 1), // client 0 is A (echo side), client 1 is B
			OnDisconnect:   func(error) { b.disconnects.Add(1) },
			RequestTimeout: b.cfg.requestTimeout,
			TLSConfig:      tlsConfig(b.cfg.insecure),
		})
		if err != nil {
			return err
		}
		b.clients[i] = c
		b.runDone.Go(func() {
			if err := c.Run(runCtx); err != nil {
				errs <- fmt.Errorf("bridge %c: %w", 'A'+i, err)
			}
		})
	}
	for i := range n {
		wctx, wcancel := context.WithTimeout(ctx, b.cfg.requestTimeout)
		done := make(chan error, 1)
		go func() {
			w, err := b.clients[i].WaitConnected(wctx)
			if err == nil {
				b.logf("bridge %c connected: %s of operator %s, %d users bound already", 'A'+i, w.BridgeID, w.Operator, len(w.Users))
			}
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case err = <-errs:
		}
		wcancel()
		if err != nil {
			return fmt.Errorf("bridge %c: connecting to %s: %w", 'A'+i, b.cfg.hs, err)
		}
	}
	return nil
}

func (b *bridgeBench) close() {
	if b.stop != nil {
		b.stop()
	}
	b.runDone.Wait()
}

// setup binds the users and creates the rooms.
func (b *bridgeBench) setup(ctx context.Context) error {
	a, bb := b.clients[0], b.clients[1]
	n := b.cfg.rooms
	b.usersA, b.usersB = make([]string, n), make([]string, n)
	for r := range n {
		b.usersA[r] = practitioner(b.cfg.idnatBase + 2*r)
		b.usersB[r] = practitioner(b.cfg.idnatBase + 2*r + 1)
	}
	t0 := time.Now()
	if err := parallel(ctx, 2*n, b.cfg.setupConcurrency, func(ctx context.Context, i int) error {
		c, user := a, b.usersA[i/2]
		if i%2 == 1 {
			c, user = bb, b.usersB[i/2]
		}
		if _, err := c.Bind(ctx, user); err != nil {
			return fmt.Errorf("bind %s: %w", user, err)
		}
		return nil
	}); err != nil {
		return err
	}
	b.logf("%d users bound (%d on A, %d on B) in %s", 2*n, n, n, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	b.rooms = make([]sdk.RoomID, n)
	if err := parallel(ctx, n, b.cfg.setupConcurrency, func(ctx context.Context, r int) error {
		room, err := a.CreateRoom(ctx, sdk.CreateRoom{As: b.usersA[r], Name: fmt.Sprintf("eimis-bench %d", r),
			Invite: []string{b.usersB[r]}, IsDirect: true})
		if err != nil {
			return fmt.Errorf("create room as %s: %w", b.usersA[r], err)
		}
		b.rooms[r] = room
		if _, err := bb.Join(ctx, b.usersB[r], room); err != nil {
			return fmt.Errorf("%s joins %s: %w", b.usersB[r], room, err)
		}
		return nil
	}); err != nil {
		return err
	}
	b.mu.Lock()
	b.roomIndex = make(map[sdk.RoomID]int32, n)
	for r, id := range b.rooms {
		b.roomIndex[id] = int32(r)
	}
	b.mu.Unlock()
	// Let B's feed catch up with the setup (its users' joins) so the
	// first messages do not queue behind it.
	deadline := time.Now().Add(b.cfg.requestTimeout)
	for b.joinsSeenB.Load() < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	b.logf("%d rooms created and joined in %s (B saw %d joins)", n, time.Since(t0).Round(time.Millisecond), b.joinsSeenB.Load())
	return ctx.Err()
}

func bridgeFailureKey(err error) string {
	var se *sdk.Error
	switch {
	case errors.As(err, &se):
		return se.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, sdk.ErrDisconnected):
		return "disconnected"
	}
	return "error"
}

// phase runs one load phase at rate (0: closed loop).
func (b *bridgeBench) phase(ctx context.Context, run string, rate float64) *BridgeReport {
	tr := newBridgeTracker(run)
	b.mu.Lock()
	b.trackers[run] = tr
	b.mu.Unlock()
	stats := newSendStats()
	discBefore := b.disconnects.Load()
	a := b.clients[0]

	start := b.clock.Now()
	p := &plan{warmupEnd: start + b.cfg.warmup, messages: b.cfg.messages}
	if b.cfg.duration > 0 {
		p.end = p.warmupEnd + b.cfg.duration
	}
	sendCtx := context.WithoutCancel(ctx)
	send := func(seq int64, scheduled time.Duration, warmup bool) {
		room := int32(seq % int64(len(b.rooms)))
		rctx, cancel := context.WithTimeout(sendCtx, b.cfg.requestTimeout)
		started := b.clock.Now()
		tr.begin(seq, room, scheduled, started, warmup)
		_, err := a.SendText(rctx, b.usersA[room], b.rooms[room], run+"."+strconv.FormatInt(seq, 10), bridgeBody(run, seq))
		done := b.clock.Now()
		cancel()
		tr.finish(seq, err == nil)
		failure := ""
		if err != nil {
			failure = bridgeFailureKey(err)
		}
		stats.record(scheduled, started, done, warmup, failure)
	}
	if rate > 0 {
		b.logf("run %s: open loop at %g msg/s over %d rooms", run, rate, len(b.rooms))
		runOpenLoop(ctx, b.clock, rate, b.cfg.maxInflight, start, p, send)
	} else {
		b.logf("run %s: closed loop with %d senders over %d rooms", run, b.cfg.concurrency, len(b.rooms))
		runClosedLoop(ctx, b.clock, b.cfg.concurrency, p, send)
	}
	loadEnd := b.clock.Now()
	b.logf("run %s: load done, draining (up to %s, %d deliveries outstanding)", run, b.cfg.drain, tr.pending())
	for tr.pending() > 0 && b.clock.Now()-loadEnd < b.cfg.drain {
		_ = b.clock.Sleep(context.Background(), 10*time.Millisecond)
	}
	drained := b.clock.Now() - loadEnd

	d := tr.tally()
	tr.mu.Lock()
	delivery, fromSend, hubStamp, echo, misrouted := tr.delivery, tr.fromSend, tr.hubStamp, tr.echo, tr.misrouted
	tr.mu.Unlock()
	window := stats.lastDone - p.warmupEnd
	rep := &BridgeReport{
		Run: run, Hub: b.cfg.hs, Path: "bridge A -> hub -> bridge B", Interrupted: ctx.Err() != nil,
		LoadResult: loadResult(stats, rate, b.cfg.concurrency, b.cfg.maxInflight, b.cfg.warmup, window, drained),
		Rooms:      len(b.rooms), BoundUsers: 2 * len(b.rooms), IDNatBase: b.cfg.idnatBase,
		DeliveryLatency:  summarize(delivery),
		DeliveryFromSend: summarize(fromSend),
		HubStampToB:      summarize(hubStamp),
		EchoLatency:      summarize(echo),
		Deliveries:       d,
		Misrouted:        misrouted,
		Disconnects:      b.disconnects.Load() - discBefore,
	}
	rep.OK = d.Lost == 0 && d.Duplicated == 0 && d.EchoLost == 0 && d.EchoDuplicated == 0 && d.Unknown == 0 && misrouted == 0
	return rep
}

// runBridge runs --mode bridge.
func runBridge(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	var log io.Writer = stderr
	if cfg.quiet {
		log = nil
	}
	b := &bridgeBench{cfg: cfg, clock: realClock{epoch: time.Now()}, log: log, trackers: map[string]*bridgeTracker{}}
	if cfg.bridge.bindUsers > 0 {
		return b.memory(ctx, stdout, stderr)
	}
	defer b.close()
	if err := b.connect(ctx, 2); err != nil {
		fmt.Fprintln(stderr, "eimis-bench: setup failed:", err)
		return exitSetup
	}
	if err := b.setup(ctx); err != nil {
		fmt.Fprintln(stderr, "eimis-bench: setup failed:", err)
		return exitSetup
	}
	rep := b.phase(ctx, randomLetters(8), cfg.rate)
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

func tlsConfig(insecure bool) *tls.Config {
	if !insecure {
		return nil
	}
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure: self-signed test deployments
}
