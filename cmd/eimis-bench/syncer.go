package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// defaultSyncFilter keeps sync responses to what the bench reads: timeline
// events, capped so one response stays bounded. Presence, typing, receipts
// and account data are excluded so that every server does the same (small)
// amount of work per sync and none gets credit or blame for extras. Member
// lazy-loading is left off: not every server implements it, and a filter
// one server ignores would make the comparison unequal.
func defaultSyncFilter(timelineLimit int) string {
	return `{"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]},` +
		`"room":{"timeline":{"limit":` + strconv.Itoa(timelineLimit) + `},` +
		`"ephemeral":{"not_types":["*"]},"account_data":{"not_types":["*"]}}}`
}

// gapPageLimit and maxGapPages bound the back-fill after a limited sync: a
// gap bigger than that is reported as unresolved instead of stalling the
// loop (and so delaying every later delivery) on one room's history.
const (
	gapPageLimit = 100
	maxGapPages  = 50
)

// syncCounters are bench-wide; phases report the difference across them.
type syncCounters struct {
	errors         atomic.Int64
	limited        atomic.Int64
	gapsUnresolved atomic.Int64
	foreign        atomic.Int64
}

type SyncReport struct {
	Loops          int   `json:"loops"`
	Errors         int64 `json:"errors"`
	Limited        int64 `json:"limited_timelines"`
	GapsUnresolved int64 `json:"gaps_unresolved"`
	// Bench events from another run (e.g. an earlier one reusing the
	// same users and rooms); ignored.
	Foreign int64 `json:"foreign_events"`
}

func (c *syncCounters) snapshot() SyncReport {
	return SyncReport{Errors: c.errors.Load(), Limited: c.limited.Load(),
		GapsUnresolved: c.gapsUnresolved.Load(), Foreign: c.foreign.Load()}
}

func (r SyncReport) minus(o SyncReport) SyncReport {
	return SyncReport{Loops: r.Loops, Errors: r.Errors - o.Errors, Limited: r.Limited - o.Limited,
		GapsUnresolved: r.GapsUnresolved - o.GapsUnresolved, Foreign: r.Foreign - o.Foreign}
}

// syncLoop is one member's client: a /sync long-poll that reports every
// bench message it sees to the tracker of the run that sent it.
type syncLoop struct {
	b      *bench
	user   *account
	filter string
	since  string
	// anchors holds the last timeline event seen per room, where the
	// back-fill after a limited sync may stop.
	anchors map[string]string
}

// initial performs the first sync, which only establishes the position
// from which later syncs report new events. Load starts after every loop
// has done this, so no bench message can predate a member's sync token.
func (l *syncLoop) initial(ctx context.Context) error {
	l.anchors = map[string]string{}
	return retry(ctx, "initial sync for "+l.user.localpart, func(ctx context.Context) error {
		ctx, cancel := l.b.withTimeout(ctx)
		defer cancel()
		body, err := l.b.api.sync(ctx, l.user, l.filter, "", 0)
		var me *matrixError
		if errors.As(err, &me) && me.Status == http.StatusBadRequest && len(l.filter) > 0 && l.filter[0] == '{' {
			// Inline filters are optional for servers to
			// support; an uploaded one is not.
			id, ferr := l.b.api.uploadFilter(ctx, l.user, l.filter)
			if ferr != nil {
				return fmt.Errorf("inline filter refused (%v) and upload failed: %w", err, ferr)
			}
			l.filter = id
			body, err = l.b.api.sync(ctx, l.user, l.filter, "", 0)
		}
		if err != nil {
			return err
		}
		var resp syncResponse
		if err := json.Unmarshal(body, &resp); err != nil {
			return fmt.Errorf("decoding sync: %w", err)
		}
		if resp.NextBatch == "" {
			return errors.New("sync response without next_batch")
		}
		l.handle(ctx, &resp, l.b.clock.Now(), true)
		l.since = resp.NextBatch
		return nil
	})
}

// run long-polls until ctx is cancelled. Errors are counted and retried
// from the same token, so a failed poll delays deliveries but loses none.
func (l *syncLoop) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, l.b.cfg.syncTimeout+l.b.cfg.requestTimeout)
		body, err := l.b.api.sync(rctx, l.user, l.filter, l.since, l.b.cfg.syncTimeout)
		at := l.b.clock.Now()
		cancel()
		var resp syncResponse
		if err == nil {
			err = json.Unmarshal(body, &resp)
		}
		if err == nil && resp.NextBatch == "" {
			err = errors.New("sync response without next_batch")
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.b.syncCounters.errors.Add(1)
			if l.b.clock.Sleep(ctx, backoff) != nil {
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		l.handle(ctx, &resp, at, false)
		l.since = resp.NextBatch
	}
}

func (l *syncLoop) handle(ctx context.Context, resp *syncResponse, at time.Duration, initial bool) {
	for roomID, room := range resp.Rooms.Join {
		tl := &room.Timeline
		anchor := l.anchors[roomID]
		for i := range tl.Events {
			l.observe(&tl.Events[i], at, false)
		}
		if n := len(tl.Events); n > 0 {
			l.anchors[roomID] = tl.Events[n-1].EventID
		}
		// The initial sync's history predates the run and is
		// expected to be truncated.
		if tl.Limited && !initial {
			l.b.syncCounters.limited.Add(1)
			if !l.fillGap(ctx, roomID, tl.PrevBatch, anchor) {
				l.b.syncCounters.gapsUnresolved.Add(1)
			}
		}
	}
}

// fillGap pages backwards from a limited timeline until it reaches the last
// event this member had already seen in the room. Events found on the way
// count as delivered when fetched, which is when a real client would have
// had them. It reports whether the gap was closed.
func (l *syncLoop) fillGap(ctx context.Context, roomID, from, anchor string) bool {
	if from == "" {
		return false
	}
	for range maxGapPages {
		rctx, cancel := l.b.withTimeout(ctx)
		body, err := l.b.api.messages(rctx, l.user, roomID, from, gapPageLimit)
		at := l.b.clock.Now()
		cancel()
		var page messagesResponse
		if err == nil {
			err = json.Unmarshal(body, &page)
		}
		if err != nil {
			return false
		}
		for i := range page.Chunk {
			if anchor != "" && page.Chunk[i].EventID == anchor {
				return true
			}
			l.observe(&page.Chunk[i], at, true)
		}
		if len(page.Chunk) == 0 || page.End == "" || page.End == from {
			// Start of the room reached. That closes the gap only
			// if we never had an anchor to look for.
			return anchor == ""
		}
		from = page.End
	}
	return false
}

func (l *syncLoop) observe(ev *syncEvent, at time.Duration, viaGap bool) {
	tag := ev.Content.Bench
	if tag == nil || ev.Type != "m.room.message" {
		return
	}
	tr := l.b.trackerFor(tag.Run)
	if tr == nil {
		l.b.syncCounters.foreign.Add(1)
		return
	}
	tr.seen(tag.Seq, l.user.idx, at, viaGap)
}
