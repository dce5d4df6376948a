package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("json output %q: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["k"] != "v" || rec["level"] != "WARN" {
		t.Fatalf("unexpected record %v", rec)
	}

	buf.Reset()
	log, err = NewLogger(&buf, "", "")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("hello")
	if out := buf.String(); !strings.Contains(out, "level=INFO msg=hello") || strings.Contains(out, "hidden") {
		t.Fatalf("text output %q", out)
	}

	if _, err := NewLogger(io.Discard, "loud", "text"); err == nil {
		t.Fatal("bad level accepted")
	}
	if _, err := NewLogger(io.Discard, "info", "xml"); err == nil {
		t.Fatal("bad format accepted")
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("scrape status %d", rr.Code)
	}
	return rr.Body.String()
}

func assertContains(t *testing.T, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, l) {
			t.Errorf("metrics output lacks %q", l)
		}
	}
}

func TestMetricsScrape(t *testing.T) {
	m, h, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	ctx := context.Background()

	m.EventAccepted(ctx, "m.room.message")
	m.EventAccepted(ctx, "m.room.message")
	m.EventAccepted(ctx, "m.room.member")
	m.EventAccepted(ctx, "com.example.custom")
	m.EventAccepted(ctx, "m.room.made_up_by_client")
	m.EventRejected(ctx, "M_FORBIDDEN")
	m.EventRejected(ctx, "weird reason with spaces")
	m.PublishObserved(2*time.Millisecond, nil)
	m.PublishObserved(time.Second, errors.New("timeout"))
	m.SyncWakeups(ctx, 3)
	m.SyncWakeups(ctx, 2)
	m.EventDelivered(ctx, 40*time.Millisecond)

	body := scrape(t, h)
	assertContains(t, body,
		`eimis_events_accepted_total{type="m.room.message"} 2`,
		`eimis_events_accepted_total{type="m.room.member"} 1`,
		`eimis_events_accepted_total{type="other"} 2`,
		`eimis_events_rejected_total{reason="M_FORBIDDEN"} 1`,
		`eimis_events_rejected_total{reason="other"} 1`,
		`eimis_nats_publish_duration_seconds_count{result="ok"} 1`,
		`eimis_nats_publish_duration_seconds_count{result="error"} 1`,
		`eimis_nats_publish_duration_seconds_bucket{result="ok",le="0.0025"} 1`,
		`eimis_sync_wakeups_total 5`,
		`eimis_event_delivery_seconds_count 1`,
		`eimis_event_delivery_seconds_bucket{le="0.05"} 1`,
		`eimis_event_delivery_seconds_bucket{le="0.025"} 0`,
		"# TYPE eimis_nats_publish_duration_seconds histogram",
		"go_goroutines",
	)
	if strings.Contains(body, "made_up_by_client") || strings.Contains(body, "com.example") {
		t.Error("unbounded event type leaked into labels")
	}
	if strings.Contains(body, "otel_scope_name") || strings.Contains(body, "target_info") {
		t.Error("scope info or target_info exported")
	}
}

func TestMiddleware(t *testing.T) {
	m, h, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/client/v3/rooms/{roomId}/state", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{}"))
	})
	mux.HandleFunc("PUT /_matrix/client/v3/rooms/{roomId}/send/{type}/{txn}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	})
	mux.HandleFunc("GET /_matrix/client/v3/sync", func(w http.ResponseWriter, r *http.Request) {
		// Streaming handlers must still be able to flush.
		if _, ok := w.(http.Flusher); !ok {
			t.Error("middleware hid http.Flusher")
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
	})
	srv := httptest.NewServer(m.Middleware(nil, mux))
	defer srv.Close()

	do := func(method, path string) {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/state")
	do(http.MethodGet, "/_matrix/client/v3/rooms/!b:x/state")
	do(http.MethodPut, "/_matrix/client/v3/rooms/!a:x/send/m.room.message/1")
	do(http.MethodGet, "/_matrix/client/v3/sync")
	do(http.MethodGet, "/nope/!secret:x")
	do("BREW", "/_matrix/client/v3/sync")

	body := scrape(t, h)
	assertContains(t, body,
		`eimis_http_requests_total{code="200",method="GET",route="GET /_matrix/client/v3/rooms/{roomId}/state"} 2`,
		`eimis_http_requests_total{code="403",method="PUT",route="PUT /_matrix/client/v3/rooms/{roomId}/send/{type}/{txn}"} 1`,
		`eimis_http_requests_total{code="200",method="GET",route="GET /_matrix/client/v3/sync"} 1`,
		`eimis_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`eimis_http_requests_total{code="405",method="OTHER",route="unmatched"} 1`,
		`eimis_http_request_duration_seconds_count{code="200",method="GET",route="GET /_matrix/client/v3/rooms/{roomId}/state"} 2`,
		"# TYPE eimis_http_request_duration_seconds histogram",
	)
	if strings.Contains(body, "!a:x") || strings.Contains(body, "secret") {
		t.Error("raw path leaked into labels")
	}

	// A custom route function wins over r.Pattern.
	rr := httptest.NewRecorder()
	m.Middleware(func(*http.Request) string { return "custom" }, mux).
		ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync", nil))
	assertContains(t, scrape(t, h), `eimis_http_requests_total{code="200",method="GET",route="custom"} 1`)
}

func TestMiddlewarePanicCounted(t *testing.T) {
	m, h, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	handler := m.Middleware(func(*http.Request) string { return "boom" },
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic swallowed by middleware")
			}
		}()
		handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/x", nil))
	}()
	assertContains(t, scrape(t, h), `eimis_http_requests_total{code="500",method="POST",route="boom"} 1`)
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	ctx := context.Background()
	m.EventAccepted(ctx, "m.room.message")
	m.EventRejected(ctx, "x")
	m.PublishObserved(time.Millisecond, nil)
	m.SyncWakeups(ctx, 1)
	m.EventDelivered(ctx, time.Millisecond)
	m.HTTPRequest(ctx, "GET", "/", 200, time.Millisecond)
	next := http.NotFoundHandler()
	if got := m.Middleware(nil, next); got == nil {
		t.Fatal("nil Metrics middleware returned nil")
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestIndependentInstances(t *testing.T) {
	// Private registries: two instances must not collide or share values.
	m1, h1, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	_, h2, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	m1.SyncWakeups(context.Background(), 7)
	assertContains(t, scrape(t, h1), "eimis_sync_wakeups_total 7")
	if strings.Contains(scrape(t, h2), "eimis_sync_wakeups_total 7") {
		t.Fatal("instances share state")
	}
}
