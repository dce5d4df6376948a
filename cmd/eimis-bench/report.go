package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is one load phase's result. Its JSON form is the record meant to
// be kept next to the server version and configuration it measured.
type Report struct {
	Run        string `json:"run"`
	Homeserver string `json:"homeserver"`
	// Implementation and version, when the server says.
	Server      string `json:"server,omitempty"`
	Interrupted bool   `json:"interrupted,omitempty"`
	LoadResult
	Users       int `json:"users"`
	Rooms       int `json:"rooms"`
	ActiveRooms int `json:"active_rooms"`
	Members     int `json:"members_per_room"`

	DeliveryLatency Summary      `json:"delivery_latency"`
	EchoLatency     Summary      `json:"own_echo_latency"`
	Deliveries      Deliveries   `json:"deliveries"`
	Sync            SyncReport   `json:"sync"`
	HTTP            HTTPSettings `json:"http"`
	// False if any accepted message was lost or duplicated for any member,
	// the sender's own copy included.
	OK bool `json:"ok"`
	// Ramp steps only: whether the step met the objective (see sustained).
	Sustained *bool `json:"sustained,omitempty"`
}

type SendReport struct {
	Attempted      int64            `json:"attempted"`
	Accepted       int64            `json:"accepted"`
	Failed         int64            `json:"failed"`
	FailedByStatus map[string]int64 `json:"failed_by_status"`
	// Warmup sends are not part of the figures above.
	WarmupAttempted int64 `json:"warmup_attempted"`
	WarmupAccepted  int64 `json:"warmup_accepted"`
}

// RampReport wraps the steps of a --ramp run.
type RampReport struct {
	P99ObjectiveMs   float64   `json:"p99_objective_ms"`
	MaxSustainedRate float64   `json:"max_sustained_rate"`
	Steps            []*Report `json:"steps"`
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func latencyLine(s Summary) string {
	if s.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %.2f  p95 %.2f  p99 %.2f  max %.2f  (n=%d, mean %.2f)", s.P50, s.P95, s.P99, s.Max, s.Count, s.Mean)
}

func (r *Report) writeText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run %s against %s", r.Run, r.Homeserver)
	if r.Server != "" {
		fmt.Fprintf(tw, " (%s)", r.Server)
	}
	if r.Interrupted {
		fmt.Fprint(tw, " (interrupted)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "topology\t%d users, %d rooms x %d members (%d with traffic), %d sync loops\n",
		r.Users, r.Rooms, r.Members, r.ActiveRooms, r.Sync.Loops)
	r.LoadResult.write(tw)
	fmt.Fprintf(tw, "delivery latency ms\t%s\n", latencyLine(r.DeliveryLatency))
	fmt.Fprintf(tw, "own echo latency ms\t%s\n", latencyLine(r.EchoLatency))
	d := r.Deliveries
	fmt.Fprintf(tw, "deliveries\texpected %d  delivered %d  lost %d  duplicated %d\n", d.Expected, d.Delivered, d.Lost, d.Duplicated)
	fmt.Fprintf(tw, "own echo\texpected %d  delivered %d  lost %d  duplicated %d\n", d.EchoExpected, d.EchoDelivered, d.EchoLost, d.EchoDuplicated)
	if d.DeliveredWithoutAck > 0 || d.Unknown > 0 || d.GapRecovered > 0 {
		fmt.Fprintf(tw, "\tdelivered without ack %d  unknown %d  recovered from gaps %d\n", d.DeliveredWithoutAck, d.Unknown, d.GapRecovered)
	}
	fmt.Fprintf(tw, "sync\terrors %d  limited timelines %d  unresolved gaps %d  foreign events %d\n",
		r.Sync.Errors, r.Sync.Limited, r.Sync.GapsUnresolved, r.Sync.Foreign)
	fmt.Fprintf(tw, "drain\t%.2fs\n", r.DrainS)
	h := r.HTTP
	fmt.Fprintf(tw, "http\t%s, keep-alive %t, MaxIdleConns %d, MaxIdleConnsPerHost %d, MaxConnsPerHost %d (0 = unlimited), IdleConnTimeout %s, request timeout %s\n",
		h.Protocol, h.KeepAlive, h.MaxIdleConns, h.MaxIdleConnsPerHost, h.MaxConnsPerHost, h.IdleConnTimeout, h.RequestTimeout)
	verdict := "OK"
	if !r.OK {
		verdict = "FAIL: messages lost or duplicated"
	}
	if r.Sync.GapsUnresolved > 0 {
		verdict += " (suspicious: unresolved sync gaps may hide events)"
	}
	fmt.Fprintf(tw, "result\t%s\n", verdict)
	tw.Flush()
}

func byStatus(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.SortedFunc(maps.Keys(m), cmp.Compare) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func (rr *RampReport) writeText(w io.Writer) {
	for i, s := range rr.Steps {
		fmt.Fprintf(w, "=== ramp step %d: %g msg/s\n", i+1, s.TargetRate)
		s.writeText(w)
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target/s\taccepted/s\tfailed\tsend p99 ms\tdelivery p99 ms\tlost\tdup\tsustained\t\n")
	for _, s := range rr.Steps {
		fmt.Fprintf(tw, "%g\t%.1f\t%d\t%.2f\t%.2f\t%d\t%d\t%t\t\n", s.TargetRate, s.AcceptedPerSec, s.Sends.Failed,
			s.SendLatency.P99, s.DeliveryLatency.P99, s.Deliveries.Lost, s.Deliveries.Duplicated, s.Sustained != nil && *s.Sustained)
	}
	tw.Flush()
	if rr.MaxSustainedRate > 0 {
		fmt.Fprintf(w, "max sustained rate: %g msg/s (p99 objective %.0f ms)\n", rr.MaxSustainedRate, rr.P99ObjectiveMs)
	} else {
		fmt.Fprintf(w, "max sustained rate: none of the steps met the p99 objective of %.0f ms\n", rr.P99ObjectiveMs)
	}
}

// LoadResult is what both bench modes (Client-Server and bridge) report
// about the load they applied; its fields appear inline in their JSON.
type LoadResult struct {
	Mode       string  `json:"mode"`
	TargetRate float64 `json:"target_rate,omitempty"`
	// Closed loop: number of senders. Open loop: the in-flight cap.
	Concurrency int `json:"concurrency"`

	WarmupS float64 `json:"warmup_s"`
	// From the end of warmup to the completion of the last measured send.
	WindowS float64 `json:"window_s"`
	DrainS  float64 `json:"drain_s"`

	Sends          SendReport `json:"sends"`
	AcceptedPerSec float64    `json:"accepted_per_sec"`
	// Measured from each send's scheduled time (see sendStats.record).
	SendLatency Summary `json:"send_latency"`
	// Open loop only: how late sends left relative to the timetable. A
	// large lag means the generator or its in-flight cap, not only the
	// server, limited the run.
	StartLag *Summary `json:"start_lag,omitempty"`
}

// loadResult summarises one phase's sends: open loop at rate (with
// inflight as the cap) when rate > 0, else closed loop with senders.
func loadResult(stats *sendStats, rate float64, senders, inflight int, warmup, window, drained time.Duration) LoadResult {
	l := LoadResult{
		Mode: "closed-loop", TargetRate: rate, Concurrency: senders,
		WarmupS: warmup.Seconds(), WindowS: max(window, 0).Seconds(), DrainS: drained.Seconds(),
		Sends: SendReport{
			Attempted: stats.attempted, Accepted: stats.accepted, Failed: stats.attempted - stats.accepted,
			FailedByStatus: stats.failedByStatus, WarmupAttempted: stats.warmAttempted, WarmupAccepted: stats.warmAccepted,
		},
		SendLatency: summarize(stats.latency),
	}
	if rate > 0 {
		l.Mode, l.Concurrency = "open-loop", inflight
		lag := summarize(stats.lag)
		l.StartLag = &lag
	}
	if window > 0 {
		l.AcceptedPerSec = float64(stats.accepted) / window.Seconds()
	}
	return l
}

// write prints the load lines of a text report.
func (l LoadResult) write(tw io.Writer) {
	if l.Mode == "open-loop" {
		fmt.Fprintf(tw, "load\topen loop at %g msg/s, in-flight cap %d, warmup %.1fs\n", l.TargetRate, l.Concurrency, l.WarmupS)
	} else {
		fmt.Fprintf(tw, "load\tclosed loop, %d senders, warmup %.1fs\n", l.Concurrency, l.WarmupS)
	}
	fmt.Fprintf(tw, "sends\tattempted %d  accepted %d  failed %d%s\n",
		l.Sends.Attempted, l.Sends.Accepted, l.Sends.Failed, byStatus(l.Sends.FailedByStatus))
	if l.Sends.WarmupAttempted > 0 {
		fmt.Fprintf(tw, "\twarmup: attempted %d  accepted %d\n", l.Sends.WarmupAttempted, l.Sends.WarmupAccepted)
	}
	fmt.Fprintf(tw, "throughput\t%.1f accepted msg/s over %.2fs\n", l.AcceptedPerSec, l.WindowS)
	fmt.Fprintf(tw, "send latency ms\t%s\n", latencyLine(l.SendLatency))
	if l.StartLag != nil {
		fmt.Fprintf(tw, "start lag ms\t%s\n", latencyLine(*l.StartLag))
	}
}
