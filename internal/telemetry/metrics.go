package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Attribute keys. They become Prometheus label names as is.
const (
	attrMethod = "method"
	attrRoute  = "route"
	attrCode   = "code"
	attrType   = "type"
	attrReason = "reason"
	attrResult = "result"
	// attrDoor is the kind of door a request came through (internal/door).
	attrDoor = "door"
)

// Bucket boundaries in seconds. The OTel default buckets are tuned for
// milliseconds and would put every observation in the first bucket.
var (
	// HTTP includes /sync long-polls, hence the 30s and 60s buckets.
	httpBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	// Publish acks are sub-millisecond embedded, a few ms clustered; fsync
	// and cluster trouble show up in the upper buckets.
	publishBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}
	// Delivery lag covers accept → outbox → NATS → notifier → /sync.
	deliveryBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// Metrics holds the hub's instruments. Its methods are safe for concurrent
// use; a nil *Metrics records nothing, so components can be built without
// telemetry in tests.
type Metrics struct {
	provider *sdkmetric.MeterProvider

	httpRequests    metric.Int64Counter
	httpDuration    metric.Float64Histogram
	eventsAccepted  metric.Int64Counter
	eventsRejected  metric.Int64Counter
	publishDuration metric.Float64Histogram
	syncWakeups     metric.Int64Counter
	eventDelivery   metric.Float64Histogram
	policyRefusals  metric.Int64Counter
	membersRemoved  metric.Int64Counter
	fedInst         fedInstruments // built on first use (fedsender.go)

	// Pre-built attribute options for the bounded event-type set, so the
	// accept path does not allocate per event.
	acceptedByType map[string]metric.AddOption
	publishOK      metric.RecordOption
	publishErr     metric.RecordOption
}

// NewMetrics builds the meter provider with a Prometheus exporter on a
// private registry and returns the handler serving it. A private registry
// keeps metrics that libraries register on the global default out of
// /metrics and lets tests create as many instances as they like.
func NewMetrics() (*Metrics, http.Handler, error) {
	reg := prometheus.NewRegistry()
	// Process and runtime metrics are cheap and the first thing looked at
	// when a node misbehaves.
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register process collector: %w", err)
	}

	exporter, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		// Pinned so names do not change when the exporter's default does.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		// Scope labels and target_info only add noise for a single binary.
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	m, err := newMetrics(provider)
	if err != nil {
		_ = provider.Shutdown(context.Background())
		return nil, nil, err
	}
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	return m, handler, nil
}

func newMetrics(provider *sdkmetric.MeterProvider) (*Metrics, error) {
	meter := provider.Meter("github.com/eimis-hub/eimis")
	m := &Metrics{provider: provider}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error

	// OTel names use dots and units; the exporter turns them into the
	// Prometheus names in the comments (suffixes _total and _seconds).
	m.httpRequests, err = meter.Int64Counter("eimis.http.requests", // eimis_http_requests_total
		metric.WithDescription("HTTP requests served, by method, route pattern and status code."),
		metric.WithUnit("{request}"))
	add(err)
	m.httpDuration, err = meter.Float64Histogram("eimis.http.request.duration", // eimis_http_request_duration_seconds
		metric.WithDescription("HTTP request duration, by method, route pattern and status code."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(httpBuckets...))
	add(err)
	m.eventsAccepted, err = meter.Int64Counter("eimis.events.accepted", // eimis_events_accepted_total
		metric.WithDescription("Events accepted into rooms, by event type (m.room.* or other)."),
		metric.WithUnit("{event}"))
	add(err)
	m.eventsRejected, err = meter.Int64Counter("eimis.events.rejected", // eimis_events_rejected_total
		metric.WithDescription("Events rejected, by reason code."),
		metric.WithUnit("{event}"))
	add(err)
	m.publishDuration, err = meter.Float64Histogram("eimis.nats.publish.duration", // eimis_nats_publish_duration_seconds
		metric.WithDescription("Time from publishing an event to NATS until the JetStream ack, by result."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(publishBuckets...))
	add(err)
	m.syncWakeups, err = meter.Int64Counter("eimis.sync.wakeups", // eimis_sync_wakeups_total
		metric.WithDescription("Waiting /sync requests woken by new events."),
		metric.WithUnit("{wakeup}"))
	add(err)
	m.eventDelivery, err = meter.Float64Histogram("eimis.event.delivery", // eimis_event_delivery_seconds
		metric.WithDescription("Lag from accepting an event to delivering it in a /sync response."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(deliveryBuckets...))
	add(err)
	m.policyRefusals, err = meter.Int64Counter("eimis.policy.refusals", // eimis_policy_refusals_total
		metric.WithDescription("Trust-space refusals (login, invite, join, send…), by stable refusal code."),
		metric.WithUnit("{refusal}"))
	add(err)
	m.membersRemoved, err = meter.Int64Counter("eimis.directory.removed_memberships", // eimis_directory_removed_memberships_total
		metric.WithDescription("Room memberships ended by the hub because the directory withdrew an authorisation."),
		metric.WithUnit("{membership}"))
	add(err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: create instruments: %w", err)
	}

	m.acceptedByType = make(map[string]metric.AddOption, len(roomEventTypes)+1)
	for t := range roomEventTypes {
		m.acceptedByType[t] = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrType, t)))
	}
	m.acceptedByType[otherLabel] = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrType, otherLabel)))
	m.publishOK = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrResult, "ok")))
	m.publishErr = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrResult, "error")))
	return m, nil
}

// Shutdown stops the meter provider; later recordings are dropped.
func (m *Metrics) Shutdown(ctx context.Context) error {
	if m == nil {
		return nil
	}
	if err := m.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shutdown meter provider: %w", err)
	}
	return nil
}

const otherLabel = "other"

// roomEventTypes are the m.room.* types from the Matrix spec. Anything else,
// including made-up m.room.* types a client may send, is counted as
// "other": event types are client-controlled and must not become
// unbounded label values.
var roomEventTypes = map[string]struct{}{
	"m.room.aliases": {}, "m.room.avatar": {}, "m.room.canonical_alias": {},
	"m.room.create": {}, "m.room.encrypted": {}, "m.room.encryption": {},
	"m.room.guest_access": {}, "m.room.history_visibility": {}, "m.room.join_rules": {},
	"m.room.member": {}, "m.room.message": {}, "m.room.name": {},
	"m.room.pinned_events": {}, "m.room.power_levels": {}, "m.room.redaction": {},
	"m.room.server_acl": {}, "m.room.third_party_invite": {}, "m.room.tombstone": {},
	"m.room.topic": {},
}

// EventAccepted counts an accepted event of type evType.
func (m *Metrics) EventAccepted(ctx context.Context, evType string) {
	if m == nil {
		return
	}
	opt, ok := m.acceptedByType[evType]
	if !ok {
		opt = m.acceptedByType[otherLabel]
	}
	m.eventsAccepted.Add(ctx, 1, opt)
}

// EventRejected counts a rejected event. reason should be a short code from
// a fixed set (e.g. a Matrix errcode such as M_FORBIDDEN); anything that
// does not look like one is counted as "other" to keep cardinality bounded.
func (m *Metrics) EventRejected(ctx context.Context, reason string) {
	if m == nil {
		return
	}
	m.eventsRejected.Add(ctx, 1, metric.WithAttributes(attribute.String(attrReason, reasonLabel(reason))))
}

func reasonLabel(reason string) string {
	if reason == "" || len(reason) > 48 {
		return otherLabel
	}
	for _, c := range reason {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return otherLabel
		}
	}
	return reason
}

// PublishObserved records one NATS publish-ack round trip. Its signature
// matches bus.Config.OnPublish so it can be wired directly.
func (m *Metrics) PublishObserved(d time.Duration, err error) {
	if m == nil {
		return
	}
	opt := m.publishOK
	if err != nil {
		opt = m.publishErr
	}
	m.publishDuration.Record(context.Background(), d.Seconds(), opt)
}

// SyncWakeups counts n /sync long-polls woken by new events.
func (m *Metrics) SyncWakeups(ctx context.Context, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.syncWakeups.Add(ctx, int64(n))
}

// EventDelivered records the lag between accepting an event and handing it
// to a client in a /sync response.
func (m *Metrics) EventDelivered(ctx context.Context, lag time.Duration) {
	if m == nil {
		return
	}
	m.eventDelivery.Record(ctx, max(lag, 0).Seconds())
}

// HTTPRequest records one served request. route must be a pattern, never
// the raw path, or room and event IDs would explode the series count.
func (m *Metrics) HTTPRequest(ctx context.Context, method, route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	set := metric.WithAttributeSet(attribute.NewSet(
		attribute.String(attrMethod, methodLabel(method)),
		attribute.String(attrRoute, route),
		attribute.Int(attrCode, code),
	))
	m.httpRequests.Add(ctx, 1, set)
	m.httpDuration.Record(ctx, d.Seconds(), set)
}

// methodLabel folds non-standard methods into one value; the method is
// client-controlled and otherwise unbounded.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	default:
		return strings.ToUpper(otherLabel)
	}
}

// Middleware records count and duration of every request passing through
// next. route is called after next has run, because http.ServeMux fills
// r.Pattern while routing; with route == nil, r.Pattern is used. Put the
// middleware outside the mux and make sure nothing in between replaces the
// request (e.g. r.WithContext) before the mux sees it, or the pattern is
// lost and the request is counted as "unmatched".
func (m *Metrics) Middleware(route func(*http.Request) string, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	if route == nil {
		route = func(r *http.Request) string { return r.Pattern }
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w}
		defer func() {
			code := rw.code
			if p := recover(); p != nil {
				// The server turns a panic into a dropped connection; count
				// it as a server error, then let the panic continue.
				if code == 0 {
					code = http.StatusInternalServerError
				}
				m.HTTPRequest(r.Context(), r.Method, route(r), code, time.Since(start))
				panic(p)
			}
			if code == 0 {
				code = http.StatusOK
			}
			m.HTTPRequest(r.Context(), r.Method, route(r), code, time.Since(start))
		}()
		next.ServeHTTP(rw, r)
	})
}

// statusWriter captures the status code. It implements Unwrap so
// http.ResponseController still reaches the underlying writer's optional
// interfaces (Hijacker, deadlines), and Flush because /sync and other
// streaming handlers use it through a plain type assertion.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx responses (e.g. 103 Early Hints) are not the final status.
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
