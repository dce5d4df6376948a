// Package fhir reads practitioners from the Annuaire Santé FHIR API (v2) and
// turns them into directory.Practitioner values, so the hub can keep its
// directory fresh between two bulk extracts.
//
// Roles are fetched with _revinclude=PractitionerRole:practitioner on the
// Practitioner search rather than with a second PractitionerRole search: FHIR
// returns included resources on the same page as the match they belong to, so
// each page can be mapped and emitted on its own, memory stays bounded by the
// page size, and there is no join across two result sets that could drift
// apart while the server's data changes under a long sync. The price is that
// _lastUpdated filters on the Practitioner only: a role added to a
// practitioner whose own resource did not change is missed by an incremental
// sync and caught by the next full one.
//
// Mapping. A practitioner is emitted only with an idNat that
// directory.ParseIDNat accepts (identifier system SystemIDNat, or an
// unsystemed identifier typed IDNPS), because the idNat is the key every
// policy decision uses; others are counted in Stats.Skipped. The RPPS comes
// from SystemRPPS or SystemRPPSv1 and must agree with the idNat, since a
// record whose two identifiers disagree cannot be bound to one person safely.
// Names come from name[0] (given names joined by a space, the first prefix
// turned into the extract's civility label); professions from the
// TRE_G15 codings of the active roles; activities from their organization,
// the reference (or, without one, the identifier value) kept as StructureID.
package fhir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/eimis-hub/eimis/internal/directory"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultPageSize      = 50
	DefaultRetryBase     = 500 * time.Millisecond
	DefaultRetryMaxDelay = 30 * time.Second
	// MaxPageSize is what we allow in _count: the gateway pages by 50 and a
	// larger page only makes one slow response more likely to time out.
	MaxPageSize = 1000
)

const (
	// maxPageBytes bounds one Bundle in memory; a 50-entry page is a few
	// hundred KiB, so anything near this is not a page we understand.
	maxPageBytes = 64 << 20
	// maxErrorBody keeps APIError small enough to log.
	maxErrorBody = 512
	// maxRetryAfter stops a confused gateway from parking a sync for hours;
	// the next scheduled sync will try again anyway.
	maxRetryAfter = 5 * time.Minute
	apiKeyHeader  = "ESANTE-API-KEY"
	fhirJSON      = "application/fhir+json"
)

// Config configures a Client. Zero values take the defaults above, except
// BaseURL and APIKey which are required.
type Config struct {
	// BaseURL is the FHIR base, e.g. https://gateway.api.esante.gouv.fr/fhir/v2.
	BaseURL string
	// APIKey is sent in the ESANTE-API-KEY header, never anywhere else.
	APIKey string
	// Timeout bounds one HTTP exchange, body included, not the whole sync.
	Timeout time.Duration
	// MaxRetries is how many times a failed request is retried (0: never).
	MaxRetries int
	// PageSize is sent as _count.
	PageSize int
	// HTTPClient is copied, not modified; nil uses a fresh http.Client.
	HTTPClient *http.Client
	// RetryBase is the first backoff delay, doubled on each retry; tests
	// set it to a microsecond.
	RetryBase time.Duration
	// RetryMaxDelay caps the exponential backoff (not Retry-After).
	RetryMaxDelay time.Duration
}

// Client searches the FHIR API. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
	hc   *http.Client
}

// Stats summarises one Practitioners call, also when it fails half-way.
type Stats struct {
	Pages         int // Bundles decoded
	Practitioners int // practitioners passed to fn
	Skipped       int // Practitioner resources without a valid idNat
	Roles         int // PractitionerRole resources seen
	Retries       int // requests repeated after a transient failure
}

// APIError is a non-retryable (or retries exhausted) HTTP error answer.
type APIError struct {
	Status int
	Body   string // truncated, API key redacted
}

func (e *APIError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("fhir: HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("fhir: HTTP %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// New validates cfg and returns a Client. Every problem is reported, so an
// operator fixes the configuration in one go.
func New(cfg Config) (*Client, error) {
	var errs []error
	var base *url.URL
	if cfg.BaseURL == "" {
		errs = append(errs, errors.New("BaseURL is required"))
	} else if u, err := url.Parse(cfg.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("BaseURL: %w", err))
	} else {
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("BaseURL: scheme must be http or https, not %q", u.Scheme))
		case u.Host == "":
			errs = append(errs, errors.New("BaseURL: host is missing"))
		case u.RawQuery != "" || u.Fragment != "":
			errs = append(errs, errors.New("BaseURL: must not carry a query or fragment"))
		case u.User != nil:
			// Credentials in the URL would end up in every error message.
			errs = append(errs, errors.New("BaseURL: must not carry user information"))
		default:
			u.Path = strings.TrimSuffix(u.Path, "/")
			u.RawPath = ""
			base = u
		}
	}
	if cfg.APIKey == "" {
		errs = append(errs, errors.New("APIKey is required"))
	} else if strings.ContainsFunc(cfg.APIKey, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		// Never echo the key itself: the message is likely to be logged.
		errs = append(errs, errors.New("APIKey contains spaces or control characters"))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("Config.Timeout must not be negative (got %s)", cfg.Timeout))
	}
	if cfg.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("MaxRetries must not be negative (got %d)", cfg.MaxRetries))
	}
	if cfg.PageSize < 0 || cfg.PageSize > MaxPageSize {
		errs = append(errs, fmt.Errorf("PageSize must be between 0 and %d (got %d)", MaxPageSize, cfg.PageSize))
	}
	if cfg.RetryBase < 0 {
		errs = append(errs, fmt.Errorf("RetryBase must not be negative (got %s)", cfg.RetryBase))
	}
	if cfg.RetryMaxDelay < 0 {
		errs = append(errs, fmt.Errorf("RetryMaxDelay must not be negative (got %s)", cfg.RetryMaxDelay))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("fhir: invalid config: %w", err)
	}

	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.RetryMaxDelay == 0 {
		cfg.RetryMaxDelay = DefaultRetryMaxDelay
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	// Go strips Authorization on cross-host redirects but not custom headers,
	// so a redirect elsewhere would hand our API key to a stranger.
	prev := hc.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !sameOrigin(req.URL, base) {
			return fmt.Errorf("refusing redirect to another host %s", req.URL.Host)
		}
		if prev != nil {
			return prev(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	cfg.HTTPClient = &hc
	return &Client{cfg: cfg, base: base, hc: &hc}, nil
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

// searchURL is the first page of the Practitioner search.
func (c *Client) searchURL(since time.Time) string {
	u := *c.base
	u.Path += "/Practitioner"
	q := url.Values{}
	q.Set("_count", strconv.Itoa(c.cfg.PageSize))
	q.Set("_revinclude", "PractitionerRole:practitioner")
	if !since.IsZero() {
		q.Set("_lastUpdated", "ge"+since.UTC().Format(time.RFC3339))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Practitioners walks the Practitioner search (those updated at or after
// since, or all of them when since is zero), calling fn once per practitioner
// with a valid idNat, in server order. A practitioner may be emitted twice if
// the server's paging shifts during the walk, so fn should upsert. An error
// from fn stops the walk and is returned wrapped.
func (c *Client) Practitioners(ctx context.Context, since time.Time, fn func(directory.Practitioner) error) (Stats, error) {
	var st Stats
	next := c.searchURL(since)
	seen := map[string]bool{}
	for page := 1; next != ""; page++ {
		if seen[next] {
			return st, fmt.Errorf("fhir: page %d: next link loops back to %s", page, next)
		}
		seen[next] = true
		body, err := c.get(ctx, next, &st)
		if err != nil {
			return st, fmt.Errorf("fhir: page %d: %w", page, err)
		}
		b, err := decodeBundle(body)
		if err != nil {
			return st, fmt.Errorf("fhir: page %d (%s): %w", page, next, err)
		}
		st.Pages++
		res := mapBundle(b)
		st.Skipped += res.skipped
		st.Roles += res.roles
		for _, p := range res.practitioners {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			if err := fn(p); err != nil {
				return st, fmt.Errorf("fhir: page %d: callback: %w", page, err)
			}
			st.Practitioners++
		}
		next, err = c.resolveNext(next, b.link("next"))
		if err != nil {
			return st, fmt.Errorf("fhir: page %d: %w", page, err)
		}
	}
	return st, nil
}

// resolveNext accepts relative next links but refuses another origin, where
// the API key would follow.
func (c *Client) resolveNext(cur, next string) (string, error) {
	if next == "" {
		return "", nil
	}
	cu, err := url.Parse(cur)
	if err != nil {
		return "", fmt.Errorf("current page URL: %w", err)
	}
	nu, err := cu.Parse(next)
	if err != nil {
		return "", fmt.Errorf("next link: %w", err)
	}
	if !sameOrigin(nu, c.base) {
		return "", fmt.Errorf("next link points to another host %s", nu.Host)
	}
	return nu.String(), nil
}

// get fetches one page, retrying transient failures.
func (c *Client) get(ctx context.Context, u string, st *Stats) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		body, retryAfter, err := c.try(ctx, u)
		if err == nil {
			return body, nil
		}
		if ctx.Err() != nil {
			// The caller gave up: say so rather than report the side effect.
			return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		if !retryable(err) || attempt >= c.cfg.MaxRetries {
			if attempt > 0 {
				return nil, fmt.Errorf("after %d attempts: %w", attempt+1, err)
			}
			return nil, err
		}
		delay := retryAfter
		if delay < 0 {
			delay = c.backoff(attempt)
		}
		st.Retries++
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (while waiting to retry after: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// backoff is exponential with jitter over [d/2, d), so that hubs restarted
// together do not hammer the gateway in step.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.RetryBase
	for i := 0; i < attempt && d < c.cfg.RetryMaxDelay; i++ {
		d *= 2
	}
	d = min(d, c.cfg.RetryMaxDelay)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half)
}

// transientError marks failures worth retrying.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func retryable(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// try makes one request. retryAfter is negative when the server did not say.
func (c *Client) try(ctx context.Context, u string) (body []byte, retryAfter time.Duration, err error) {
	retryAfter = -1
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, retryAfter, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set(apiKeyHeader, c.cfg.APIKey)
	req.Header.Set("Accept", fhirJSON)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, retryAfter, &transientError{c.scrub(err)}
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxPageBytes+1))
	if err != nil {
		return nil, retryAfter, &transientError{fmt.Errorf("read body: %w", c.scrub(err))}
	}
	if resp.StatusCode == http.StatusOK {
		if len(body) > maxPageBytes {
			return nil, retryAfter, fmt.Errorf("page larger than %d bytes", maxPageBytes)
		}
		return body, retryAfter, nil
	}
	apiErr := &APIError{Status: resp.StatusCode, Body: c.errorBody(body)}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return nil, retryAfter, &transientError{apiErr}
	case resp.StatusCode >= 500:
		return nil, retryAfter, &transientError{apiErr}
	default:
		return nil, retryAfter, apiErr
	}
}

// scrub is belt and braces: the key only travels in a header, but a
// transport or proxy error could one day quote the request.
func (c *Client) scrub(err error) error {
	if err == nil || !strings.Contains(err.Error(), c.cfg.APIKey) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), c.cfg.APIKey, "[REDACTED]"))
}

// errorBody keeps the start of an error answer for diagnosis; gateways have
// been known to echo request headers, hence the redaction before truncation.
func (c *Client) errorBody(b []byte) string {
	s := strings.ReplaceAll(string(b), c.cfg.APIKey, "[REDACTED]")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxErrorBody {
		cut := maxErrorBody
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// parseRetryAfter reads delta-seconds or an HTTP date; -1 means absent or
// unreadable, so the caller falls back to its own backoff.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return -1
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return -1
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return -1
	}
	return min(d, maxRetryAfter)
}
