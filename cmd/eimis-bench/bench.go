package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

type config struct {
	hs               string
	sharedSecret     string
	userPrefix       string
	idnatBase        int // > 0: user i is the synthetic practitioner of serial idnatBase+i
	password         string
	users            int
	rooms            int
	members          int
	rate             float64
	concurrency      int
	maxInflight      int
	duration         time.Duration
	messages         int64
	warmup           time.Duration
	drain            time.Duration
	json             bool
	quiet            bool
	insecure         bool
	setupConcurrency int
	requestTimeout   time.Duration
	syncTimeout      time.Duration
	timelineLimit    int
	syncFilter       string
	seed             uint64
	ramp             []float64
	rampP99          time.Duration
	bridge           bridgeConfig
}

type bench struct {
	cfg          config
	api          *api
	transport    *http.Transport
	clock        clock
	log          io.Writer
	topo         *topology
	activeRooms  int
	accounts     []*account
	roomIDs      []string
	loops        []*syncLoop
	syncCounters syncCounters
	server       string

	mu       sync.RWMutex
	trackers map[string]*tracker
}

func newBench(cfg config, log io.Writer) (*bench, error) {
	topo, err := buildTopology(cfg.users, cfg.rooms, cfg.members)
	if err != nil {
		return nil, err
	}
	active := cfg.rooms
	// Messages go to rooms round-robin, so with fewer messages than rooms
	// the surplus rooms would never see traffic; leaving them (and their
	// members' sync loops) out keeps idle load from skewing the result.
	if cfg.messages > 0 && cfg.warmup == 0 && cfg.messages < int64(active) && len(cfg.ramp) == 0 {
		active = int(cfg.messages)
	}
	syncUsers := len(topo.membersOf(active))
	senders := cfg.concurrency
	if cfg.rate > 0 || len(cfg.ramp) > 0 {
		senders = cfg.maxInflight
	}
	tr := newTransport(senders+syncUsers+cfg.setupConcurrency, cfg.insecure)
	return &bench{
		cfg:         cfg,
		api:         &api{base: cfg.hs, hc: &http.Client{Transport: tr}},
		transport:   tr,
		clock:       realClock{epoch: time.Now()},
		log:         log,
		topo:        topo,
		activeRooms: active,
		trackers:    map[string]*tracker{},
	}, nil
}

func (b *bench) logf(format string, args ...any) {
	if b.log != nil {
		fmt.Fprintf(b.log, "eimis-bench: "+format+"\n", args...)
	}
}

func (b *bench) trackerFor(run string) *tracker {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.trackers[run]
}

// setup creates users and rooms and brings every member's sync loop to the
// present. The returned function stops the sync loops.
func (b *bench) setup(ctx context.Context) (stop func(), err error) {
	pctx, cancel := b.withTimeout(ctx)
	err = b.api.checkClientAPI(pctx)
	if err == nil {
		b.server = b.api.serverVersion(pctx)
	}
	cancel()
	if err != nil {
		return nil, err
	}

	t0 := time.Now()
	if err := b.registerAll(ctx); err != nil {
		return nil, err
	}
	b.logf("%d users ready (prefix %q) in %s", len(b.accounts), b.cfg.userPrefix, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	if err := b.createRooms(ctx); err != nil {
		return nil, err
	}
	b.logf("%d rooms created and joined in %s", len(b.roomIDs), time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	filter := b.cfg.syncFilter
	if filter == "" {
		filter = defaultSyncFilter(b.cfg.timelineLimit)
	}
	users := b.topo.membersOf(b.activeRooms)
	b.loops = make([]*syncLoop, len(users))
	for i, u := range users {
		b.loops[i] = &syncLoop{b: b, user: b.accounts[u], filter: filter}
	}
	if err := parallel(ctx, len(b.loops), b.cfg.setupConcurrency, func(ctx context.Context, i int) error {
		return b.loops[i].initial(ctx)
	}); err != nil {
		return nil, err
	}
	// The loops outlive the load's context on purpose: after an interrupt
	// they must keep running through the drain so the report is complete.
	syncCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, l := range b.loops {
		wg.Go(func() { l.run(syncCtx) })
	}
	b.logf("%d sync loops caught up in %s", len(b.loops), time.Since(t0).Round(time.Millisecond))
	return func() { cancel(); wg.Wait() }, nil
}

// phase runs one load phase at rate (0: closed loop) under its own run ID
// and returns its report.
func (b *bench) phase(ctx context.Context, run string, rate float64) *Report {
	tr := newTracker(run, b.topo)
	b.mu.Lock()
	b.trackers[run] = tr
	b.mu.Unlock()
	stats := newSendStats()
	syncBefore := b.syncCounters.snapshot()

	start := b.clock.Now()
	p := &plan{warmupEnd: start + b.cfg.warmup, messages: b.cfg.messages}
	if b.cfg.duration > 0 {
		p.end = p.warmupEnd + b.cfg.duration
	}
	// In-flight sends are not cut off by an interrupt (only the issuing
	// of new ones stops), so every send gets a definite outcome.
	sendCtx := context.WithoutCancel(ctx)
	send := func(seq int64, scheduled time.Duration, warmup bool) {
		room := int32(seq % int64(b.activeRooms))
		members := b.topo.rooms[room]
		slot := senderSlot(b.cfg.seed, seq, len(members))
		user := b.accounts[members[slot]]
		tr.begin(seq, room, slot, scheduled, warmup)
		rctx, cancel := b.withTimeout(sendCtx)
		started := b.clock.Now()
		err := b.api.send(rctx, user, b.roomIDs[room], fmt.Sprintf("%s.%d", run, seq), messageBody(run, seq))
		done := b.clock.Now()
		cancel()
		tr.finish(seq, err == nil)
		failure := ""
		if err != nil {
			failure = failureKey(err)
		}
		stats.record(scheduled, started, done, warmup, failure)
	}
	if rate > 0 {
		b.logf("run %s: open loop at %g msg/s", run, rate)
		runOpenLoop(ctx, b.clock, rate, b.cfg.maxInflight, start, p, send)
	} else {
		b.logf("run %s: closed loop with %d senders", run, b.cfg.concurrency)
		runClosedLoop(ctx, b.clock, b.cfg.concurrency, p, send)
	}
	loadEnd := b.clock.Now()

	b.logf("run %s: load done, draining (up to %s, %d deliveries outstanding)", run, b.cfg.drain, tr.outstanding.Load())
	for tr.outstanding.Load() > 0 && b.clock.Now()-loadEnd < b.cfg.drain {
		b.clock.Sleep(context.Background(), 10*time.Millisecond)
	}
	drained := b.clock.Now() - loadEnd

	deliveries, delivery, echo := tr.tally()
	window := stats.lastDone - p.warmupEnd
	rep := &Report{
		Run:             run,
		Homeserver:      b.cfg.hs,
		Server:          b.server,
		Interrupted:     ctx.Err() != nil,
		LoadResult:      loadResult(stats, rate, b.cfg.concurrency, b.cfg.maxInflight, b.cfg.warmup, window, drained),
		Users:           b.cfg.users,
		Rooms:           b.cfg.rooms,
		ActiveRooms:     b.activeRooms,
		Members:         b.cfg.members,
		DeliveryLatency: summarize(delivery),
		EchoLatency:     summarize(echo),
		Deliveries:      deliveries,
		Sync:            b.syncCounters.snapshot().minus(syncBefore),
		HTTP:            describeTransport(b.transport, b.cfg.requestTimeout),
	}
	rep.Sync.Loops = len(b.loops)
	rep.OK = deliveries.Lost == 0 && deliveries.Duplicated == 0 &&
		deliveries.EchoLost == 0 && deliveries.EchoDuplicated == 0
	return rep
}

// sustained reports whether a ramp step kept up: the offered rate was
// accepted (within 5%, allowing for the partial last second), nothing
// failed or went missing, and both p99s stayed within the objective.
func sustained(r *Report, p99 time.Duration) bool {
	obj := ms(p99)
	return r.OK && r.Sends.Failed == 0 &&
		r.AcceptedPerSec >= 0.95*r.TargetRate &&
		r.SendLatency.P99 <= obj && r.DeliveryLatency.P99 <= obj
}
