package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix/federation"

	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/errclass"
)

// worker runs one destination's queue: one transaction at a time, in
// queue order.
type worker struct {
	s    *Sender
	dest string
	log  *slog.Logger

	// ephWake is signalled when a best-effort EDU arrives; retryNow cuts
	// a backoff short (Wake). Separate, so typing at a down server does
	// not hammer it.
	ephWake  chan struct{}
	retryNow chan struct{}

	ephMu sync.Mutex
	eph   []entry

	mu          sync.Mutex
	up          bool
	failures    int
	lastSuccess time.Time
	nextRetry   time.Time
	lastError   string
	oldest      time.Time
	// catchUp is set when the destination failed: the next transactions
	// look at the backlog and skip what lies beyond the catch-up window.
	catchUp bool
}

func newWorker(s *Sender, dest string) *worker {
	return &worker{
		s: s, dest: dest, log: s.log.With("destination", dest),
		ephWake: make(chan struct{}, 1), retryNow: make(chan struct{}, 1),
		up: true,
	}
}

func (w *worker) status() DestStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return DestStatus{Destination: w.dest, Up: w.up, Failures: w.failures, LastSuccess: w.lastSuccess,
		NextRetry: w.nextRetry, LastError: w.lastError, Oldest: w.oldest}
}

// pushEphemeral buffers a best-effort EDU, dropping the oldest when full.
func (w *worker) pushEphemeral(e entry) {
	w.ephMu.Lock()
	if len(w.eph) >= w.s.cfg.EphemeralMax {
		w.eph = w.eph[1:]
		w.s.dropped(context.Background(), DropEphemeralOverflow, 1)
	}
	w.eph = append(w.eph, e)
	w.ephMu.Unlock()
	select {
	case w.ephWake <- struct{}{}:
	default:
	}
}

// takeEphemeral removes up to n fresh buffered EDUs, dropping stale ones.
func (w *worker) takeEphemeral(n int) []entry {
	w.ephMu.Lock()
	defer w.ephMu.Unlock()
	cutoff := time.Now().Add(-w.s.cfg.EphemeralMaxAge).UnixMilli()
	stale := 0
	for len(w.eph) > 0 && w.eph[0].QueuedAt < cutoff {
		w.eph = w.eph[1:]
		stale++
	}
	w.s.dropped(context.Background(), DropEphemeralStale, stale)
	n = min(n, len(w.eph))
	out := slices.Clone(w.eph[:n])
	w.eph = w.eph[n:]
	return out
}

func (w *worker) run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		err := w.session(ctx)
		if ctx.Err() != nil {
			return
		}
		failures++
		delay := backoff(w.s.cfg.BackoffBase, w.s.cfg.BackoffMax, failures)
		w.log.Warn("federation queue interrupted; reopening", "retry_in", delay, errclass.Attr(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// backoff is base doubled per failure after the first, capped at max.
func backoff(base, maxDelay time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// batch is one transaction being built or delivered.
type batch struct {
	txnID string
	pdus  []json.RawMessage
	edus  []json.RawMessage
	// seqs are the stream sequences of the queue entries in it; read
	// are the entries read into it (included or skipped), all
	// acknowledged once it is delivered, and last the last of them.
	seqs   []uint64
	read   []*bus.FedOutMsg
	last   *bus.FedOutMsg
	queued []int64 // queue times of the durable entries, for latency
	oldest int64
	// skip is how many more entries are beyond the catch-up window: the
	// PDUs among them are acknowledged unsent.
	skip uint64
}

func (b *batch) empty() bool { return len(b.pdus) == 0 && len(b.edus) == 0 }

func (b *batch) noteQueued(t int64) {
	if b.oldest == 0 || t < b.oldest {
		b.oldest = t
	}
}

// reader hands out a queue's entries once each, in order, with one entry
// of look-ahead that can be put back.
type reader struct {
	fq    *bus.FedQueue
	wake  <-chan struct{}
	seen  uint64
	carry *bus.FedOutMsg
}

var errWoken = errors.New("woken")

// next returns the next entry; with block false, (nil, nil) when none is
// ready; with block true, errWoken when a best-effort EDU arrived first.
func (r *reader) next(ctx context.Context, block bool) (*bus.FedOutMsg, error) {
	if m := r.carry; m != nil {
		r.carry = nil
		return m, nil
	}
	for {
		var m bus.FedOutMsg
		if block {
			select {
			case m = <-r.fq.Messages():
			case <-r.wake:
				return nil, errWoken
			case <-r.fq.Done():
				return nil, r.fq.Err()
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		} else {
			select {
			case m = <-r.fq.Messages():
			default:
				return nil, nil
			}
		}
		if m.Seq <= r.seen {
			continue // delivered again after AckWait: already handled
		}
		r.seen = m.Seq
		return &m, nil
	}
}

// nextWithin waits up to d for an entry known to be coming ((nil, nil)
// if none came: an entry expired from the queue meanwhile).
func (r *reader) nextWithin(ctx context.Context, d time.Duration) (*bus.FedOutMsg, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case m := <-r.fq.Messages():
			if m.Seq <= r.seen {
				continue
			}
			r.seen = m.Seq
			return &m, nil
		case <-t.C:
			return nil, nil
		case <-r.fq.Done():
			return nil, r.fq.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// session opens the queue and delivers transactions until an error.
func (w *worker) session(ctx context.Context) error {
	fq, err := w.s.q.OpenFedQueue(ctx, w.dest, bus.FedQueueConfig{})
	if err != nil {
		return err
	}
	defer fq.Stop()
	infl, err := w.s.q.LoadInflight(ctx, w.dest)
	if err != nil {
		return err
	}
	r := &reader{fq: fq, wake: w.ephWake}
	if infl != nil {
		// The record outlives its delivery; with nothing queued it is
		// surely done, and waiting for its entries would wait forever.
		depth, err := w.s.q.Depth(ctx, w.dest)
		if err != nil {
			return err
		}
		if depth == 0 {
			infl = nil
		}
	}
	if infl != nil {
		b, err := w.rebuild(ctx, r, infl)
		if err != nil {
			return err
		}
		if err := w.deliver(ctx, b, false); err != nil {
			return err
		}
	}
	for {
		b, err := w.build(ctx, r)
		if err != nil {
			return err
		}
		if err := w.deliver(ctx, b, true); err != nil {
			return err
		}
	}
}

// rebuild re-reads the transaction that was in flight when the previous
// run stopped, with the same ID and entries. Entries up to its last that
// are not in it were skipped then and are skipped again.
func (w *worker) rebuild(ctx context.Context, r *reader, infl *bus.Inflight) (*batch, error) {
	b := &batch{txnID: infl.TxnID}
	for {
		m, err := r.next(ctx, true)
		if errors.Is(err, errWoken) {
			continue // best-effort EDUs wait for the next transaction
		}
		if err != nil {
			return nil, err
		}
		if m.Seq > infl.Last {
			// Everything of it is gone (delivered, or past the queue's
			// limits): this entry starts the next transaction.
			r.carry = m
			return b, nil
		}
		b.last = m
		b.read = append(b.read, m)
		if slices.Contains(infl.Seqs, m.Seq) {
			w.include(ctx, b, m)
		}
		if m.Seq == infl.Last {
			return b, nil
		}
	}
}

// include adds a queue entry to b (or skips it if it cannot be decoded).
func (w *worker) include(ctx context.Context, b *batch, m *bus.FedOutMsg) {
	var e entry
	if err := json.Unmarshal(m.Body, &e); err != nil || (e.PDU == nil && e.EDU == nil) {
		w.s.dropped(ctx, DropUndecodable, 1)
		return
	}
	switch {
	case m.Kind == bus.FedOutKindPDU && e.PDU != nil:
		b.pdus = append(b.pdus, e.PDU)
	case m.Kind == bus.FedOutKindEDU && e.EDU != nil:
		raw, err := json.Marshal(e.EDU)
		if err != nil {
			w.s.dropped(ctx, DropUndecodable, 1)
			return
		}
		b.edus = append(b.edus, raw)
	default:
		w.s.dropped(ctx, DropUndecodable, 1)
		return
	}
	b.seqs = append(b.seqs, m.Seq)
	b.queued = append(b.queued, e.QueuedAt)
	b.noteQueued(e.QueuedAt)
}

// fits reports whether one more entry of kind fits in b.
func (w *worker) fits(b *batch, kind string) bool {
	if kind == bus.FedOutKindPDU {
		return len(b.pdus) < w.s.cfg.MaxPDUs
	}
	return len(b.edus) < w.s.cfg.MaxEDUs
}

// take reads m into b: included, or skipped when it is a PDU beyond the
// catch-up window.
func (w *worker) take(ctx context.Context, b *batch, m *bus.FedOutMsg) {
	b.last = m
	b.read = append(b.read, m)
	if b.skip > 0 {
		b.skip--
		if m.Kind == bus.FedOutKindPDU {
			w.s.dropped(ctx, DropCatchUp, 1)
			return
		}
	}
	w.include(ctx, b, m)
}

// catchUpSkip returns how many entries, from the one just read on, lie
// beyond the catch-up window. The queue's depth is looked up only after
// the destination failed or when the entry says a long backlog is behind
// it, so a healthy destination costs nothing here.
func (w *worker) catchUpSkip(ctx context.Context, m *bus.FedOutMsg) (uint64, error) {
	window := uint64(w.s.cfg.CatchUpWindow)
	w.mu.Lock()
	check := w.catchUp
	w.mu.Unlock()
	if !check && m.NumPending <= window {
		return 0, nil
	}
	depth, err := w.s.q.Depth(ctx, w.dest)
	if err != nil {
		return 0, err
	}
	if depth <= window {
		w.mu.Lock()
		w.catchUp = false
		w.mu.Unlock()
		return 0, nil
	}
	return depth - window, nil
}

// build waits for the next entries and packs a transaction: everything
// ready, in queue order, up to the limits.
func (w *worker) build(ctx context.Context, r *reader) (*batch, error) {
	b := &batch{}
	for b.empty() {
		m, err := r.next(ctx, true)
		switch {
		case errors.Is(err, errWoken):
		case err != nil:
			return nil, err
		default:
			if b.skip, err = w.catchUpSkip(ctx, m); err != nil {
				return nil, err
			}
			w.take(ctx, b, m)
		}
		for _, e := range w.takeEphemeral(w.s.cfg.MaxEDUs - len(b.edus)) {
			raw, err := json.Marshal(e.EDU)
			if err != nil {
				continue
			}
			b.edus = append(b.edus, raw)
			b.noteQueued(e.QueuedAt)
		}
		if b.empty() && b.last != nil {
			// Only skipped entries so far: acknowledge them so they leave
			// the queue, and wait for more.
			if err := ackAll(ctx, b.read); err != nil {
				return nil, err
			}
			b.last, b.read = nil, nil
		}
	}
	for {
		// The last entry read says whether more were queued behind it:
		// then they are on their way and worth waiting for, so a backlog
		// leaves in full transactions whatever the timing.
		m, err := r.next(ctx, false)
		if err == nil && m == nil && b.last != nil && b.last.NumPending > 0 {
			m, err = r.nextWithin(ctx, time.Second)
		}
		if err != nil {
			return nil, err
		}
		if m == nil {
			break
		}
		if !w.fits(b, m.Kind) {
			r.carry = m
			break
		}
		w.take(ctx, b, m)
	}
	if len(b.seqs) > 0 {
		b.txnID = fmt.Sprintf("%s.%d.%d", w.s.q.Epoch(), b.seqs[0], b.seqs[len(b.seqs)-1])
	} else {
		// Best-effort EDUs only: nothing to keep stable across restarts.
		b.txnID = fmt.Sprintf("%s.e%d.%d", w.s.q.Epoch(), time.Now().UnixNano(), w.s.txnSeq.Add(1))
	}
	return b, nil
}

// deliver sends b until its destination accepts it (or drops out of the
// federation list), then acknowledges its entries. record says whether
// the transaction must first be recorded as in flight (a rebuilt one
// already is).
func (w *worker) deliver(ctx context.Context, b *batch, record bool) error {
	if b.empty() {
		return ackAll(ctx, b.read)
	}
	if record && len(b.seqs) > 0 {
		if err := w.s.q.SaveInflight(ctx, w.dest, bus.Inflight{TxnID: b.txnID, Last: b.last.Seq, Seqs: b.seqs}); err != nil {
			return err
		}
	}
	w.mu.Lock()
	w.oldest = time.UnixMilli(b.oldest)
	w.mu.Unlock()
	pdus := make([]federation.PDU, len(b.pdus))
	copy(pdus, b.pdus)
	edus := make([]federation.EDU, len(b.edus))
	copy(edus, b.edus)
	for {
		if err := w.s.cfg.Allow.ServerAllowed(w.dest); err != nil {
			// Out of the trust space: never dialled; what was queued for
			// it is dropped, as a new entry would have been.
			w.log.Warn("destination left the federation list; dropping its transaction",
				"pdus", len(pdus), "edus", len(edus), errclass.Attr(err))
			w.s.dropped(ctx, DropUnlisted, len(pdus)+len(edus))
			return w.done(ctx, b)
		}
		req := &federation.ReqSendTransaction{
			Destination: w.dest, TxnID: b.txnID, Origin: w.s.cfg.ServerName,
			OriginServerTS: jsontime.UM(time.Now()), PDUs: pdus, EDUs: edus,
		}
		sctx, cancel := context.WithTimeout(ctx, w.s.cfg.SendTimeout)
		_, err := w.s.cfg.Transport.SendTransaction(sctx, req)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m := w.s.cfg.Metrics
		if m != nil {
			m.FederationTxn(ctx, err == nil)
		}
		if err == nil {
			now := time.Now()
			if m != nil {
				for _, q := range b.queued {
					m.FederationDelivered(ctx, now.Sub(time.UnixMilli(q)))
				}
			}
			w.mu.Lock()
			if !w.up {
				w.log.Info("destination is back up", "after_failures", w.failures)
			}
			w.up, w.failures, w.lastSuccess, w.nextRetry, w.lastError = true, 0, now, time.Time{}, ""
			w.mu.Unlock()
			return w.done(ctx, b)
		}
		w.mu.Lock()
		w.failures++
		failures := w.failures
		delay := backoff(w.s.cfg.BackoffBase, w.s.cfg.BackoffMax, failures)
		if w.up {
			w.log.Warn("destination marked down", "txn_id", b.txnID, errclass.Attr(err))
		}
		w.up, w.nextRetry, w.lastError, w.catchUp = false, time.Now().Add(delay), errclass.Of(err), true
		w.mu.Unlock()
		w.log.Debug("transaction failed; retrying", "txn_id", b.txnID, "attempt", failures, "retry_in", delay, errclass.Attr(err))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-w.retryNow:
			t.Stop()
		case <-t.C:
		}
	}
}

// done acknowledges b's entries (removing them from the queue).
func (w *worker) done(ctx context.Context, b *batch) error {
	w.mu.Lock()
	w.oldest = time.Time{}
	w.mu.Unlock()
	// If this fails the entries come again after the reopen, as the same
	// recorded transaction: the receiver de-duplicates it.
	return ackAll(ctx, b.read)
}

// ackAll acknowledges entries, waiting for the server on the last one
// (acks are handled in order, so then all are).
func ackAll(ctx context.Context, ms []*bus.FedOutMsg) error {
	if len(ms) == 0 {
		return nil
	}
	for _, m := range ms[:len(ms)-1] {
		if err := m.Ack(); err != nil {
			return err
		}
	}
	return ms[len(ms)-1].AckSync(ctx)
}
