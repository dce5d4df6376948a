package trustlist

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/operators"
	"github.com/eimis-hub/eimis/internal/policy"
)

// Operators is what the list is checked against: the operator registry
// (internal/operators.Registry). Both answers come from memory.
type Operators interface {
	Check(operatorID string) (*operators.Operator, error)
	CheckServer(serverName string) (*operators.Operator, error)
}

// Practitioners decides on an idNat: active in the health directory with
// an allowed profession (internal/policy.Engine).
type Practitioners interface {
	CheckPractitioner(idnat string) error
}

// Config configures a Watcher.
type Config struct {
	// File is a signed list on disk, re-read every Interval: a new file
	// renamed over it takes effect at the next read.
	File string
	// URL is fetched every Interval. With both, the valid list with the
	// highest version wins.
	URL string
	// CacheFile, when set, keeps the last valid list fetched from URL, so
	// a restart while the URL is unreachable still has it.
	CacheFile string
	// AuthorityKey verifies every list (ParsePublicKey).
	AuthorityKey crypto.PublicKey
	// Grace is how long a list stays in force past its expiry while no
	// newer valid one can be had.
	Grace time.Duration
	// Interval between refreshes (the trust reload interval).
	Interval   time.Duration
	HTTPClient *http.Client
	Operators  Operators
	// Practitioners decides the users of servers under the directory rule.
	Practitioners Practitioners
	Log           *slog.Logger
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Watcher holds the list in force and refreshes it. Its checks read an
// atomic snapshot: no lock and no I/O on the request path.
type Watcher struct {
	cfg Config

	cur     atomic.Pointer[inForce]
	lastErr atomic.Pointer[error]
	mu      sync.Mutex // one refresh at a time

	onChange []func(List)
}

type inForce struct {
	list   List
	byName map[string]Server
	source string
}

// New returns a Watcher with no list in force: Refresh (or Run) loads
// one. Until then everything is refused.
func New(cfg Config) (*Watcher, error) {
	if cfg.AuthorityKey == nil {
		return nil, errors.New("federation list: no authority key configured")
	}
	if cfg.File == "" && cfg.URL == "" {
		return nil, errors.New("federation list: neither a file nor a URL configured")
	}
	if cfg.Operators == nil {
		return nil, errors.New("federation list: no operator registry")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	return &Watcher{cfg: cfg}, nil
}

// OnChange registers fn, called (synchronously, from the refresh) with
// each new list put in force. Register before Run.
func (w *Watcher) OnChange(fn func(List)) { w.onChange = append(w.onChange, fn) }

// Run refreshes every Interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.Refresh(ctx); err != nil && ctx.Err() == nil {
				w.cfg.Log.Warn("federation list refresh failed; the list in force stays", "err", err)
			}
		}
	}
}

// Refresh reads every configured source, verifies each, and puts the
// valid list with the highest version in force if it is newer than the
// one in force. A source that fails is reported; a valid list from
// another source is still used. A list older than the one in force is
// ignored, so replaying an old signed list never brings back a server
// since removed.
func (w *Watcher) Refresh(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	type candidate struct {
		list   List
		raw    []byte
		source string
	}
	var (
		best *candidate
		errs []error
	)
	consider := func(source string, raw []byte, err error) {
		if err == nil {
			var l List
			if l, err = Verify(raw, w.cfg.AuthorityKey); err == nil {
				if best == nil || l.Version > best.list.Version {
					best = &candidate{list: l, raw: raw, source: source}
				}
				return
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", source, err))
	}
	if w.cfg.File != "" {
		raw, err := readLimited(w.cfg.File)
		consider("file "+w.cfg.File, raw, err)
	}
	if w.cfg.URL != "" {
		raw, err := w.fetch(ctx)
		consider("url "+w.cfg.URL, raw, err)
		if err == nil && best != nil && best.source == "url "+w.cfg.URL && w.cfg.CacheFile != "" {
			if cerr := writeAtomic(w.cfg.CacheFile, raw); cerr != nil {
				w.cfg.Log.Warn("federation list cache not written", "path", w.cfg.CacheFile, "err", cerr)
			}
		}
		if err != nil && w.cfg.CacheFile != "" && w.cur.Load() == nil {
			if raw, cerr := readLimited(w.cfg.CacheFile); cerr == nil {
				consider("cache "+w.cfg.CacheFile, raw, nil)
			}
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		w.lastErr.Store(&err)
	} else {
		w.lastErr.Store(nil)
	}
	if best == nil {
		return err
	}
	cur := w.cur.Load()
	if cur != nil && best.list.Version <= cur.list.Version {
		if best.list.Version < cur.list.Version {
			w.cfg.Log.Warn("federation list older than the one in force ignored",
				"source", best.source, "version", best.list.Version, "in_force", cur.list.Version)
		}
		return err
	}
	next := &inForce{list: best.list, byName: make(map[string]Server, len(best.list.Servers)), source: best.source}
	for _, s := range best.list.Servers {
		next.byName[s.Name] = s
	}
	w.cur.Store(next)
	w.cfg.Log.Info("federation list in force", "source", best.source, "version", best.list.Version,
		"servers", len(best.list.Servers), "expires", best.list.Expires)
	for _, fn := range w.onChange {
		fn(best.list)
	}
	return err
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSignedBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSignedBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxSignedBytes)
	}
	return data, nil
}

func (w *Watcher) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := w.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxSignedBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSignedBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxSignedBytes)
	}
	return data, nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Current returns the list in force and whether one is (an expired list
// past its grace is not).
func (w *Watcher) Current() (List, bool) {
	cur := w.inForce()
	if cur == nil {
		return List{}, false
	}
	return cur.list, true
}

// inForce is the list in force now, nil when none is (never loaded, or
// expired beyond its grace).
func (w *Watcher) inForce() *inForce {
	cur := w.cur.Load()
	if cur == nil || w.cfg.Now().After(cur.list.Expires.Add(w.cfg.Grace)) {
		return nil
	}
	return cur
}

// ServerAllowed decides whether the hub may exchange anything with a
// server: nil when allowed, else an *operators.Refusal whose Code is
// stable (server not listed, suspended or revoked on the list, list
// unavailable; operator unknown, suspended or revoked in the registry;
// list and registry disagreeing on the operator). Where the list and the
// registry disagree, the more restrictive applies. No I/O.
func (w *Watcher) ServerAllowed(server string) error {
	_, err := w.entry(server)
	return err
}

func (w *Watcher) entry(server string) (Server, error) {
	cur := w.inForce()
	if cur == nil {
		return Server{}, &operators.Refusal{Code: operators.CodeListUnavailable, Subject: server}
	}
	s, ok := cur.byName[server]
	if !ok {
		return Server{}, &operators.Refusal{Code: operators.CodeServerNotListed, Subject: server}
	}
	switch s.Status {
	case Active:
	case Revoked:
		return Server{}, &operators.Refusal{Code: operators.CodeServerRevoked, Subject: server, Operator: s.Operator}
	default:
		return Server{}, &operators.Refusal{Code: operators.CodeServerSuspended, Subject: server, Operator: s.Operator}
	}
	if _, err := w.cfg.Operators.Check(s.Operator); err != nil {
		if r, ok := operators.AsRefusal(err); ok {
			// The subject stays the server, so the audit entry names it.
			return Server{}, &operators.Refusal{Code: r.Code, Subject: server, Operator: s.Operator}
		}
		return Server{}, err
	}
	reg, err := w.cfg.Operators.CheckServer(server)
	switch r, isRefusal := operators.AsRefusal(err); {
	case err == nil:
		if reg.ID != s.Operator {
			return Server{}, &operators.Refusal{Code: operators.CodeOperatorMismatch, Subject: server, Operator: s.Operator}
		}
	case isRefusal && r.Code == operators.CodeUnknownServer:
		// The registry need not list every server of an operator: the
		// list names it, and the operator itself is active.
	default:
		return Server{}, err
	}
	return s, nil
}

// UserAllowed decides whether a remote user may take part: their server
// is allowed (ServerAllowed), and either the list trusts it to vouch for
// its users (server_vouched) or the user's localpart is an idNat the
// health directory holds as an active practitioner (directory, the
// default). A refusal is an *operators.Refusal (about the server) or a
// *policy.Refusal (about the person), each with its stable code.
func (w *Watcher) UserAllowed(_ context.Context, userID string) error {
	localpart, server, err := id.UserID(userID).Parse()
	if err != nil || server == "" {
		return &policy.Refusal{Code: policy.NotAPractitionerID, Subject: userID}
	}
	s, err := w.entry(server)
	if err != nil {
		return err
	}
	if s.Users == ServerVouched {
		return nil
	}
	if _, _, err := directory.ParseIDNat(localpart); err != nil {
		return &policy.Refusal{Code: policy.NotAPractitionerID, Subject: userID}
	}
	if w.cfg.Practitioners == nil {
		return &policy.Refusal{Code: policy.DirectoryUnavailable, Subject: localpart}
	}
	return w.cfg.Practitioners.CheckPractitioner(localpart)
}

// degraded is a readiness answer that keeps the instance in the load
// balancer (see clientapi's readiness).
type degraded struct{ msg string }

func (d degraded) Error() string  { return d.msg }
func (d degraded) Degraded() bool { return true }

// Ping is the federation's readiness: an error when no list is in force
// (every federation request is then refused, and the message says why),
// a degraded one while the list in force is past its expiry (in its
// grace) or the last refresh failed.
func (w *Watcher) Ping(context.Context) error {
	var last error
	if p := w.lastErr.Load(); p != nil {
		last = *p
	}
	cur := w.cur.Load()
	if cur == nil {
		if last == nil {
			return errors.New("no federation list loaded yet: every federation request is refused")
		}
		return fmt.Errorf("no valid federation list: every federation request is refused: %w", last)
	}
	now := w.cfg.Now()
	end := cur.list.Expires.Add(w.cfg.Grace)
	switch {
	case now.After(end):
		return fmt.Errorf("federation list version %d expired at %s and its grace ended at %s: every federation request is refused",
			cur.list.Version, cur.list.Expires.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
	case now.After(cur.list.Expires):
		return degraded{fmt.Sprintf("federation list version %d expired at %s; in force until the grace ends at %s",
			cur.list.Version, cur.list.Expires.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))}
	case last != nil:
		return degraded{fmt.Sprintf("federation list version %d in force; last refresh failed: %v", cur.list.Version, last)}
	}
	return nil
}
