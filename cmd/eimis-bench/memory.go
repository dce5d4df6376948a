package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The memory scenario of the bridge path (--mode bridge --bind-users N):
// how much the hub holds per practitioner bound by a bridge.

// MemSample is one reading of the hub's /metrics, in bytes.
type MemSample struct {
	HeapInuse  float64 `json:"go_memstats_heap_inuse_bytes"`
	HeapAlloc  float64 `json:"go_memstats_heap_alloc_bytes"`
	RSS        float64 `json:"process_resident_memory_bytes"`
	Goroutines float64 `json:"go_goroutines"`
}

// MemoryReport is the result of --bind-users.
type MemoryReport struct {
	Hub        string `json:"hub"`
	MetricsURL string `json:"metrics_url"`
	// Whether a GC was forced on the hub (--gc-url) before each sample.
	ForcedGC bool `json:"forced_gc"`
	// Samples per side; each figure is the minimum over them.
	Samples        int              `json:"samples"`
	SettleS        float64          `json:"settle_s"`
	IDNatBase      int              `json:"idnat_base"`
	Requested      int              `json:"requested"`
	Bound          int64            `json:"bound"`
	Failed         int64            `json:"failed"`
	FailedByCode   map[string]int64 `json:"failed_by_code"`
	BindS          float64          `json:"bind_s"`
	BindsPerSec    float64          `json:"binds_per_sec"`
	BindLatency    Summary          `json:"bind_latency"`
	UsersInWelcome int              `json:"users_bound_before"`
	Before         MemSample        `json:"before"`
	After          MemSample        `json:"after"`
	// (After - Before) / Bound.
	HeapInusePerUser float64 `json:"heap_inuse_bytes_per_bound_user"`
	HeapAllocPerUser float64 `json:"heap_alloc_bytes_per_bound_user"`
	RSSPerUser       float64 `json:"rss_bytes_per_bound_user"`
	Interrupted      bool    `json:"interrupted,omitempty"`
}

func (r *MemoryReport) writeText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "bind memory against %s", r.Hub)
	if r.Interrupted {
		fmt.Fprint(tw, " (interrupted)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "binds\trequested %d  bound %d  failed %d%s  (%d bound before)\n", r.Requested, r.Bound, r.Failed, byStatus(r.FailedByCode), r.UsersInWelcome)
	fmt.Fprintf(tw, "bind rate\t%.1f binds/s over %.2fs\n", r.BindsPerSec, r.BindS)
	fmt.Fprintf(tw, "bind latency ms\t%s\n", latencyLine(r.BindLatency))
	fmt.Fprintf(tw, "sampling\tmin of %d samples each side, settle %.1fs, forced GC %t (%s)\n", r.Samples, r.SettleS, r.ForcedGC, r.MetricsURL)
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	fmt.Fprintf(tw, "heap in use\tbefore %s  after %s  -> %.0f bytes per bound user\n", mib(r.Before.HeapInuse), mib(r.After.HeapInuse), r.HeapInusePerUser)
	fmt.Fprintf(tw, "heap alloc\tbefore %s  after %s  -> %.0f bytes per bound user\n", mib(r.Before.HeapAlloc), mib(r.After.HeapAlloc), r.HeapAllocPerUser)
	fmt.Fprintf(tw, "RSS\tbefore %s  after %s  -> %.0f bytes per bound user\n", mib(r.Before.RSS), mib(r.After.RSS), r.RSSPerUser)
	fmt.Fprintf(tw, "goroutines\tbefore %.0f  after %.0f\n", r.Before.Goroutines, r.After.Goroutines)
	tw.Flush()
}

// parseMetrics picks the memory figures out of a Prometheus text page.
func parseMetrics(r io.Reader) (MemSample, error) {
	var s MemSample
	want := map[string]*float64{
		"go_memstats_heap_inuse_bytes":  &s.HeapInuse,
		"go_memstats_heap_alloc_bytes":  &s.HeapAlloc,
		"process_resident_memory_bytes": &s.RSS,
		"go_goroutines":                 &s.Goroutines,
	}
	found := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if p := want[name]; ok && p != nil {
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return s, fmt.Errorf("metric %s: %w", name, err)
			}
			*p = v
			found[name] = true
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	for _, n := range []string{"go_memstats_heap_inuse_bytes", "process_resident_memory_bytes"} {
		if !found[n] {
			return s, fmt.Errorf("no %s in the metrics", n)
		}
	}
	return s, nil
}

func httpGet(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// sampleMemory takes cfg.samples readings a second apart (forcing a GC
// first if it can) and keeps the minimum of each figure: the heap after
// a collection, least disturbed by garbage not yet collected.
func (b *bridgeBench) sampleMemory(ctx context.Context, hc *http.Client) (MemSample, error) {
	var best MemSample
	bc := b.cfg.bridge
	for i := range bc.samples {
		if i > 0 {
			if err := b.clock.Sleep(ctx, time.Second); err != nil {
				return best, err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, b.cfg.requestTimeout)
		if bc.gcURL != "" {
			if _, err := httpGet(rctx, hc, bc.gcURL); err != nil {
				cancel()
				return best, fmt.Errorf("forcing a GC: %w", err)
			}
		}
		body, err := httpGet(rctx, hc, bc.metricsURL)
		cancel()
		if err != nil {
			return best, err
		}
		s, err := parseMetrics(strings.NewReader(string(body)))
		if err != nil {
			return best, err
		}
		if i == 0 {
			best = s
			continue
		}
		best.HeapInuse = min(best.HeapInuse, s.HeapInuse)
		best.HeapAlloc = min(best.HeapAlloc, s.HeapAlloc)
		best.RSS = min(best.RSS, s.RSS)
		best.Goroutines = min(best.Goroutines, s.Goroutines)
	}
	return best, nil
}

func (b *bridgeBench) memory(ctx context.Context, stdout, stderr io.Writer) int {
	defer b.close()
	cfg := b.cfg
	hc := &http.Client{Transport: newTransport(4, cfg.insecure)}
	if err := b.connect(ctx, 1); err != nil {
		fmt.Fprintln(stderr, "eimis-bench: setup failed:", err)
		return exitSetup
	}
	a := b.clients[0]
	w, _ := a.WaitConnected(ctx)
	rep := &MemoryReport{
		Hub: cfg.hs, MetricsURL: cfg.bridge.metricsURL, ForcedGC: cfg.bridge.gcURL != "", Samples: cfg.bridge.samples,
		SettleS: cfg.bridge.settle.Seconds(), IDNatBase: cfg.idnatBase, Requested: cfg.bridge.bindUsers,
		UsersInWelcome: len(w.Users), FailedByCode: map[string]int64{},
	}
	before, err := b.sampleMemory(ctx, hc)
	if err != nil {
		fmt.Fprintln(stderr, "eimis-bench: reading the hub's metrics:", err)
		return exitSetup
	}
	rep.Before = before
	b.logf("before: heap in use %.1f MiB, RSS %.1f MiB; binding %d users with %d in flight",
		before.HeapInuse/(1<<20), before.RSS/(1<<20), cfg.bridge.bindUsers, cfg.setupConcurrency)

	var mu sync.Mutex
	lat := make([]time.Duration, 0, cfg.bridge.bindUsers)
	t0 := time.Now()
	progress := max(cfg.bridge.bindUsers/10, 1)
	_ = parallel(ctx, cfg.bridge.bindUsers, cfg.setupConcurrency, func(pctx context.Context, i int) error {
		start := time.Now()
		_, err := a.Bind(pctx, practitioner(cfg.idnatBase+i))
		d := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if pctx.Err() != nil {
				return nil
			}
			rep.Failed++
			rep.FailedByCode[bridgeFailureKey(err)]++
			return nil
		}
		rep.Bound++
		lat = append(lat, d)
		if rep.Bound%int64(progress) == 0 {
			b.logf("%d bound in %s", rep.Bound, time.Since(t0).Round(time.Millisecond))
		}
		return nil
	})
	rep.BindS = time.Since(t0).Seconds()
	rep.Interrupted = ctx.Err() != nil
	if rep.BindS > 0 {
		rep.BindsPerSec = float64(rep.Bound) / rep.BindS
	}
	rep.BindLatency = summarize(lat)
	b.logf("%d bound, %d failed in %.1fs; settling %s", rep.Bound, rep.Failed, rep.BindS, cfg.bridge.settle)
	sctx := context.WithoutCancel(ctx)
	_ = b.clock.Sleep(ctx, cfg.bridge.settle)
	after, err := b.sampleMemory(sctx, hc)
	if err != nil {
		fmt.Fprintln(stderr, "eimis-bench: reading the hub's metrics:", err)
		return exitSetup
	}
	rep.After = after
	if rep.Bound > 0 {
		n := float64(rep.Bound)
		rep.HeapInusePerUser = (after.HeapInuse - before.HeapInuse) / n
		rep.HeapAllocPerUser = (after.HeapAlloc - before.HeapAlloc) / n
		rep.RSSPerUser = (after.RSS - before.RSS) / n
	}
	if cfg.json {
		_ = writeJSON(stdout, rep)
	} else {
		rep.writeText(stdout)
	}
	if rep.Failed > 0 || rep.Interrupted {
		return exitLossOrDup
	}
	return exitOK
}
