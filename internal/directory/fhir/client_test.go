package fhir

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/directory/fhir/fhirtest"
)

const testKey = "s3cr3t-esante-key-0123456789"

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestClient(t *testing.T, f *fhirtest.Server, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL:    f.BaseURL(),
		APIKey:     testKey,
		Timeout:    5 * time.Second,
		MaxRetries: 2,
		PageSize:   3,
		RetryBase:  time.Microsecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func collect(t *testing.T, c *Client, ctx context.Context, since time.Time) ([]directory.Practitioner, Stats, error) {
	t.Helper()
	var got []directory.Practitioner
	st, err := c.Practitioners(ctx, since, func(p directory.Practitioner) error {
		got = append(got, p)
		return nil
	})
	if err != nil && strings.Contains(err.Error(), testKey) {
		t.Errorf("API key leaked in error: %v", err)
	}
	return got, st, err
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		wants []string // substrings, all of which must appear
	}{
		{"empty", Config{}, []string{"BaseURL is required", "APIKey is required"}},
		{"everything wrong", Config{BaseURL: "ftp://x", APIKey: "a b", Timeout: -1, MaxRetries: -1, PageSize: 5000, RetryBase: -1, RetryMaxDelay: -1},
			[]string{"scheme", "APIKey contains", "Timeout", "MaxRetries", "PageSize", "RetryBase", "RetryMaxDelay"}},
		{"no host", Config{BaseURL: "https:///fhir", APIKey: "k"}, []string{"host is missing"}},
		{"query", Config{BaseURL: "https://h/fhir?x=1", APIKey: "k"}, []string{"query"}},
		{"userinfo", Config{BaseURL: "https://u:p@h/fhir", APIKey: "k"}, []string{"user information"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil {
				t.Fatal("want error")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tt.cfg.APIKey != "" && strings.Contains(err.Error(), tt.cfg.APIKey) {
				t.Errorf("error echoes the key: %v", err)
			}
		})
	}
	c, err := New(Config{BaseURL: "https://gateway.example.test/fhir/v2/", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.PageSize != DefaultPageSize || c.cfg.Timeout != DefaultTimeout {
		t.Errorf("defaults not applied: %+v", c.cfg)
	}
	if u := c.searchURL(time.Time{}); !strings.HasPrefix(u, "https://gateway.example.test/fhir/v2/Practitioner?") {
		t.Errorf("search URL %q", u)
	}
}

func TestFullPaging(t *testing.T) {
	f := fhirtest.New(t, testKey, fhirtest.Generate(8, t0))
	c := newTestClient(t, f, nil)
	got, st, err := collect(t, c, context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Pages: 3, Practitioners: 8, Roles: 8}
	if st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	for i, p := range got {
		if p.IDNat != "8"+p.RPPS || !directory.ValidRPPS(p.RPPS) {
			t.Errorf("#%d: idNat %q RPPS %q", i, p.IDNat, p.RPPS)
		}
		if len(p.Professions) != 1 || len(p.Activities) != 1 {
			t.Errorf("#%d: roles not attached: %+v", i, p)
		}
	}
	queries := f.Stats().Queries
	first, _ := url.ParseQuery(queries[0])
	if first.Get("_count") != "3" || first.Get("_revinclude") != "PractitionerRole:practitioner" || first.Has("_lastUpdated") {
		t.Errorf("first query = %v", first)
	}
	for _, q := range queries[1:] {
		if !strings.Contains(q, "_getpages=") {
			t.Errorf("next link not followed as given: %q", q)
		}
	}
}

func TestIncremental(t *testing.T) {
	f := fhirtest.New(t, testKey, fhirtest.Generate(8, t0))
	c := newTestClient(t, f, nil)
	// A non-UTC since must still reach the server as the same instant.
	since := t0.Add(5 * time.Hour).In(time.FixedZone("CET", 3600))
	got, st, err := collect(t, c, context.Background(), since)
	if err != nil {
		t.Fatal(err)
	}
	if st.Practitioners != 3 || len(got) != 3 {
		t.Fatalf("got %d practitioners, want 3 (stats %+v)", len(got), st)
	}
	queries := f.Stats().Queries
	first, _ := url.ParseQuery(queries[0])
	if v := first.Get("_lastUpdated"); v != "ge2025-01-01T05:00:00Z" {
		t.Errorf("_lastUpdated = %q", v)
	}
}

func TestMapping(t *testing.T) {
	f := fhirtest.New(t, testKey, fhirtest.LoadRecords(t, "testdata/mapping.json"))
	c := newTestClient(t, f, func(c *Config) { c.PageSize = 50 })
	got, st, err := collect(t, c, context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 3 || st.Practitioners != 4 {
		t.Errorf("stats = %+v, want 4 emitted and 3 skipped", st)
	}
	byID := map[string]directory.Practitioner{}
	for _, p := range got {
		byID[p.IDNat] = p
	}
	tests := []struct {
		name  string
		idNat string
		want  directory.Practitioner
	}{
		{"v2 systems, duplicate profession, inactive role ignored", "810999000010", directory.Practitioner{
			IDNat: "810999000010", RPPS: "10999000010", Civility: "Docteur", LastName: "MARTIN-FICTIF", FirstName: "CLAIRE", Active: true,
			Professions: []directory.Profession{{Code: "10", Label: "Médecin"}},
			Activities: []directory.Activity{
				{StructureID: "Organization/org-001", StructureName: "Centre de santé Fictif"},
				{StructureID: "999000011", FINESS: "999000011"},
			},
		}},
		{"v1 RPPS system, absolute reference, label fallback", "810999000028", directory.Practitioner{
			IDNat: "810999000028", RPPS: "10999000028", LastName: "Durand", FirstName: "Paul Marie", Active: false,
			Professions: []directory.Profession{{Code: "60", Label: "Infirmier"}},
			Activities:  []directory.Activity{{StructureID: "Organization/org-002", StructureName: "Cabinet infirmier des Tilleuls"}},
		}},
		{"ADELI idNat has no RPPS", "0999000123", directory.Practitioner{
			IDNat: "0999000123", Civility: "Madame", LastName: "ADELI", FirstName: "CHLOE", Active: true,
		}},
		{"idNat found by type code", "810999000044", directory.Practitioner{
			IDNat: "810999000044", RPPS: "10999000044", LastName: "TYPE-SEUL", FirstName: "DAVID", Active: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := byID[tt.idNat]
			if !ok {
				t.Fatalf("%s not emitted", tt.idNat)
			}
			if !reflect.DeepEqual(p, tt.want) {
				t.Errorf("got  %+v\nwant %+v", p, tt.want)
			}
		})
	}
	for _, skipped := range []string{"810999000011", "810999000051"} {
		if _, ok := byID[skipped]; ok {
			t.Errorf("%s should have been skipped", skipped)
		}
	}
}

func TestRPPSSystems(t *testing.T) {
	for _, system := range []string{SystemRPPS, SystemRPPSv1} {
		t.Run(system, func(t *testing.T) {
			p := practitionerRes{Identifier: []identifier{
				{System: system, Value: "10999000010"},
				{System: SystemIDNat, Value: "810999000010"},
			}}
			got, err := mapPractitioner(p, nil)
			if err != nil || got.RPPS != "10999000010" {
				t.Errorf("got %+v, %v", got, err)
			}
			p.Identifier[0].Value = "10999000028"
			if _, err := mapPractitioner(p, nil); err == nil {
				t.Error("mismatched RPPS accepted")
			}
		})
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name        string
		faults      map[int]fhirtest.Fault
		maxRetries  int
		wantErr     int // HTTP status expected in an *APIError, 0 for success
		wantRetries int
		wantServed  int
	}{
		{"429 with Retry-After then success", map[int]fhirtest.Fault{2: {Status: 429, RetryAfter: "1"}}, 2, 0, 1, 4},
		{"429 without Retry-After uses backoff", map[int]fhirtest.Fault{1: {Status: 429}}, 2, 0, 1, 4},
		{"503 twice then success", map[int]fhirtest.Fault{1: {Status: 503}, 2: {Status: 503}}, 2, 0, 2, 5},
		{"5xx exhausts retries", map[int]fhirtest.Fault{1: {Status: 503}, 2: {Status: 500}, 3: {Status: 502}}, 2, 502, 2, 3},
		{"no retries configured", map[int]fhirtest.Fault{1: {Status: 500}}, 0, 500, 0, 1},
		{"404 is not retried", map[int]fhirtest.Fault{1: {Status: 404, Body: "gone"}}, 2, 404, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fhirtest.New(t, testKey, fhirtest.Generate(7, t0))
			for n, ft := range tt.faults {
				f.Inject(n, ft)
			}
			c := newTestClient(t, f, func(c *Config) { c.MaxRetries = tt.maxRetries })
			got, st, err := collect(t, c, context.Background(), time.Time{})
			if st.Retries != tt.wantRetries {
				t.Errorf("retries = %d, want %d", st.Retries, tt.wantRetries)
			}
			if served := f.Stats().Served; served != tt.wantServed {
				t.Errorf("requests = %d, want %d", served, tt.wantServed)
			}
			if tt.wantErr == 0 {
				if err != nil || len(got) != 7 {
					t.Fatalf("got %d practitioners, err %v", len(got), err)
				}
				return
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tt.wantErr {
				t.Fatalf("err = %v, want APIError %d", err, tt.wantErr)
			}
		})
	}
}

func TestUnauthorized(t *testing.T) {
	f := fhirtest.New(t, testKey, fhirtest.Generate(2, t0))
	c := newTestClient(t, f, func(c *Config) { c.APIKey = "wrong-key-abcdef" })
	_, st, err := collect(t, c, context.Background(), time.Time{})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Fatalf("err = %v, want APIError 401", err)
	}
	if hits := f.Stats().Hits; hits != 1 || st.Retries != 0 {
		t.Errorf("401 was retried: hits %d, stats %+v", hits, st)
	}
	if !strings.Contains(apiErr.Body, "OperationOutcome") || strings.Contains(err.Error(), "wrong-key-abcdef") {
		t.Errorf("body not kept or key not redacted: %q", apiErr.Body)
	}
}

func TestTimeout(t *testing.T) {
	tests := []struct {
		name       string
		maxRetries int
		wantErr    bool
	}{
		{"slow page fails without retries", 0, true},
		{"slow page retried", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fhirtest.New(t, testKey, fhirtest.Generate(5, t0))
			f.Inject(2, fhirtest.Fault{Slow: true})
			c := newTestClient(t, f, func(c *Config) { c.Timeout = 100 * time.Millisecond; c.MaxRetries = tt.maxRetries })
			got, _, err := collect(t, c, context.Background(), time.Time{})
			if !tt.wantErr {
				if err != nil || len(got) != 5 {
					t.Fatalf("got %d, err %v", len(got), err)
				}
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "page 2") {
				t.Fatalf("err = %v, want a page 2 deadline error", err)
			}
			if len(got) != 3 {
				t.Errorf("first page should have been emitted, got %d", len(got))
			}
		})
	}
}

func TestMalformedPage(t *testing.T) {
	f := fhirtest.New(t, testKey, fhirtest.Generate(7, t0))
	f.Inject(2, fhirtest.Fault{Malformed: true})
	c := newTestClient(t, f, nil)
	_, st, err := collect(t, c, context.Background(), time.Time{})
	if err == nil || !strings.Contains(err.Error(), "page 2") || !strings.Contains(err.Error(), "_getpages") {
		t.Fatalf("err = %v, want one naming page 2 and its URL", err)
	}
	if st.Retries != 0 || st.Pages != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestWrongResource(t *testing.T) {
	for _, body := range []string{`{"resourceType":"OperationOutcome"}`, `{"resourceType":"Bundle","type":"batch-response"}`, `[]`} {
		if _, err := decodeBundle([]byte(body)); err == nil {
			t.Errorf("%s accepted as a searchset", body)
		}
	}
}

func TestCancel(t *testing.T) {
	t.Run("from callback", func(t *testing.T) {
		f := fhirtest.New(t, testKey, fhirtest.Generate(7, t0))
		c := newTestClient(t, f, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		n := 0
		_, err := c.Practitioners(ctx, time.Time{}, func(directory.Practitioner) error {
			n++
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) || n != 1 {
			t.Fatalf("err = %v after %d callbacks", err, n)
		}
		if served := f.Stats().Served; served != 1 {
			t.Errorf("requests after cancel: %d", served)
		}
	})
	t.Run("during a long Retry-After", func(t *testing.T) {
		f := fhirtest.New(t, testKey, fhirtest.Generate(7, t0))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f.Inject(1, fhirtest.Fault{Status: 429, RetryAfter: "3600", Hook: cancel})
		c := newTestClient(t, f, nil)
		_, _, err := collect(t, c, ctx, time.Time{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("callback error is returned", func(t *testing.T) {
		f := fhirtest.New(t, testKey, fhirtest.Generate(7, t0))
		c := newTestClient(t, f, nil)
		boom := errors.New("store full")
		_, err := c.Practitioners(context.Background(), time.Time{}, func(directory.Practitioner) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestForeignNextLink(t *testing.T) {
	var stranger atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stranger.Add(1)
	}))
	defer other.Close()
	f := fhirtest.New(t, testKey, fhirtest.Generate(7, t0))
	f.Inject(1, fhirtest.Fault{ForeignURL: other.URL + "/fhir/v2/Practitioner?_getpages=x"})
	c := newTestClient(t, f, nil)
	_, _, err := collect(t, c, context.Background(), time.Time{})
	if err == nil || !strings.Contains(err.Error(), "another host") {
		t.Fatalf("err = %v", err)
	}
	if stranger.Load() != 0 {
		t.Error("request sent to another host")
	}
}

func TestRedirectToOtherHostRefused(t *testing.T) {
	var leaked atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("ESANTE-API-KEY"))
	}))
	defer other.Close()
	redir := httptest.NewServer(http.RedirectHandler(other.URL+"/fhir/v2/Practitioner", http.StatusFound))
	defer redir.Close()
	c, err := New(Config{BaseURL: redir.URL + "/fhir/v2", APIKey: testKey, RetryBase: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Practitioners(context.Background(), time.Time{}, func(directory.Practitioner) error { return nil })
	if err == nil {
		t.Fatal("redirect followed")
	}
	if v, _ := leaked.Load().(string); v != "" {
		t.Error("API key sent to the redirect target")
	}
}

// TestKeyNeverInErrors drives every failure path against a fake that echoes
// the key in its error bodies.
func TestKeyNeverInErrors(t *testing.T) {
	faults := []fhirtest.Fault{
		{Status: 503}, {Status: 429, RetryAfter: "0"}, {Status: 400}, {Malformed: true},
		{Status: 500, Body: strings.Repeat("x", 600) + testKey},
	}
	for _, ft := range faults {
		f := fhirtest.New(t, testKey, fhirtest.Generate(4, t0))
		for n := 1; n <= 3; n++ {
			f.Inject(n, ft)
		}
		c := newTestClient(t, f, nil)
		_, _, err := collect(t, c, context.Background(), time.Time{})
		if err == nil {
			t.Errorf("fault %+v: no error", ft)
			continue
		}
		if strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), testKey[:12]) {
			t.Errorf("key leaked: %v", err)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", -1},
		{"3", 3 * time.Second},
		{"-2", -1},
		{"soon", -1},
		{"86400", maxRetryAfter},
		{"Wed, 01 Jan 2025 12:00:10 GMT", 10 * time.Second},
		{"Wed, 01 Jan 2025 11:00:00 GMT", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestBackoffBounded(t *testing.T) {
	c := &Client{cfg: Config{RetryBase: 100 * time.Millisecond, RetryMaxDelay: time.Second}}
	for attempt := 0; attempt < 70; attempt++ {
		if d := c.backoff(attempt); d <= 0 || d > time.Second {
			t.Fatalf("attempt %d: backoff %s out of range", attempt, d)
		}
	}
}

func TestLuhnHelper(t *testing.T) {
	for i := 0; i < 200; i++ {
		base := "10" + strings.Repeat("0", 5) + string(rune('0'+i%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i/100))
		if rpps := base + string(fhirtest.LuhnCheckDigit(base)); !directory.ValidRPPS(rpps) {
			t.Fatalf("%s fails the Luhn check", rpps)
		}
	}
}
