package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/eimis-hub/eimis/internal/store"
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit: trail closed")

const (
	// maxBatch bounds one group commit. Far above what piles up behind a
	// single commit in practice; it only keeps a burst from building one
	// huge transaction.
	maxBatch = 512
	// writeTimeout bounds one batch's transaction, so a database that
	// hangs cannot make Close hang with it.
	writeTimeout = time.Minute
)

// Trail records audit entries through one writer goroutine.
type Trail struct {
	st       store.AuditStore
	log      *slog.Logger
	instance string

	// mu orders Record's send against Close's close of queue: Record
	// sends holding the read lock, Close closes holding the write lock.
	mu     sync.RWMutex
	closed bool
	queue  chan *pending
	done   chan struct{} // closed when the writer has answered everything
}

type pending struct {
	ctx context.Context
	e   Entry
	res chan error // buffered: the writer never waits for the caller
}

// New starts a trail writing to st. instance names this hub instance in
// every entry it records (unless an entry names one itself). Call Close
// when done.
func New(st store.AuditStore, log *slog.Logger, instance string) *Trail {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Trail{
		st:       st,
		log:      log.With("component", "audit"),
		instance: instance,
		queue:    make(chan *pending, maxBatch),
		done:     make(chan struct{}),
	}
	go t.run()
	return t
}

// Record stores e and returns once it is committed. Time defaults to now,
// Instance to the trail's. An entry refused as invalid (no action, a
// decision other than allow or deny, or an allowed audit.purge, which only
// Purge records) returns an error wrapping ErrInvalid; text fields are repaired rather than refused (made
// valid UTF-8 and cut to 1 KiB), so a strange user ID never costs an entry.
//
// If ctx ends while the entry waits for its transaction, Record returns
// the context's error, but the entry may still be committed.
//
// Record must not be called while holding a store write transaction: on
// SQLite the trail needs the writer connection that transaction holds.
func (t *Trail) Record(ctx context.Context, e Entry) error {
	if err := normalise(&e); err != nil {
		return err
	}
	if e.Action == ActionAuditPurge && e.Decision == Allow {
		// Verify holds the purge anchor to the last such entry; only
		// Purge writes them, in the transaction that moves the anchor.
		return fmt.Errorf("%w: %s entries that allow are written by Purge only", ErrInvalid, ActionAuditPurge)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: record %s: %w", e.Action, err)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Instance == "" {
		e.Instance = t.instance
	}
	p := &pending{ctx: ctx, e: e, res: make(chan error, 1)}
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return ErrClosed
	}
	select {
	case t.queue <- p:
		t.mu.RUnlock()
	case <-ctx.Done():
		t.mu.RUnlock()
		return fmt.Errorf("audit: record %s: %w", e.Action, ctx.Err())
	}
	select {
	case err := <-p.res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: record %s: waiting for commit: %w", e.Action, ctx.Err())
	}
}

// RecordAll records entries and returns once all are committed (or the
// first failure): they join the writer's queue together, so they share
// one or a few transactions. The stream consumer uses it for a batch of
// events.
func (t *Trail) RecordAll(ctx context.Context, entries []Entry) error {
	ps := make([]*pending, 0, len(entries))
	for _, e := range entries {
		if err := normalise(&e); err != nil {
			return err
		}
		if e.Action == ActionAuditPurge && e.Decision == Allow {
			return fmt.Errorf("%w: %s entries that allow are written by Purge only", ErrInvalid, ActionAuditPurge)
		}
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		if e.Instance == "" {
			e.Instance = t.instance
		}
		ps = append(ps, &pending{ctx: ctx, e: e, res: make(chan error, 1)})
	}
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return ErrClosed
	}
	queued := 0
	for _, p := range ps {
		select {
		case t.queue <- p:
			queued++
			continue
		case <-ctx.Done():
		}
		break
	}
	t.mu.RUnlock()
	var first error
	for _, p := range ps[:queued] {
		select {
		case err := <-p.res:
			if err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			return fmt.Errorf("audit: record: waiting for commit: %w", ctx.Err())
		}
	}
	if queued < len(ps) && first == nil {
		first = fmt.Errorf("audit: record: %w", ctx.Err())
	}
	return first
}

// Close stops accepting entries, commits those already queued and waits
// for the writer to finish. It is safe to call more than once.
func (t *Trail) Close() {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.queue)
	}
	t.mu.Unlock()
	<-t.done
}

// run is the writer: it takes the first waiting entry, then everything
// else already queued (up to maxBatch), and commits them together. While
// that transaction runs, new entries queue up for the next one, so the
// batch size follows the load by itself, with no timer.
func (t *Trail) run() {
	defer close(t.done)
	batch := make([]*pending, 0, maxBatch)
	for p := range t.queue {
		batch = append(batch[:0], p)
	fill:
		for len(batch) < maxBatch {
			select {
			case p, ok := <-t.queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		t.commit(batch)
	}
}

func (t *Trail) commit(batch []*pending) {
	entries := make([]Entry, 0, len(batch))
	live := batch[:0:0]
	for _, p := range batch {
		// A caller that gave up before its transaction started is told so
		// and its entry dropped: it got an error, and might retry.
		if err := p.ctx.Err(); err != nil {
			p.res <- fmt.Errorf("audit: record %s: %w", p.e.Action, err)
			continue
		}
		entries = append(entries, p.e)
		live = append(live, p)
	}
	if len(entries) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	_, err := t.st.AppendAudit(ctx, entries, Hash)
	if err != nil {
		t.log.Error("audit entries not recorded", "entries", len(entries), "err", err)
		err = fmt.Errorf("audit: record: %w", err)
	}
	for _, p := range live {
		p.res <- err
	}
}
