package fhir

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRecord is one Practitioner of the fake directory and the roles that
// point at it.
type fakeRecord struct {
	ID          string
	LastUpdated time.Time
	Resource    json.RawMessage
	Roles       []json.RawMessage
}

// fault replaces the normal answer to one request.
type fault struct {
	status     int
	retryAfter string
	body       string
	malformed  bool   // 200 with a truncated Bundle
	slow       bool   // hold the answer until the client gives up
	foreignURL string // next link pointing to another host
	hook       func() // run when the fault fires
}

// fakeFHIR mimics the Annuaire Santé gateway closely enough for the client:
// API key check, HAPI-style paging (_getpages/_getpagesoffset), _lastUpdated,
// _revinclude, and faults injected by request number.
type fakeFHIR struct {
	t   *testing.T
	srv *httptest.Server
	key string

	mu       sync.Mutex
	records  []fakeRecord
	hits     int // every request, authorised or not
	served   int // authorised requests, the numbering used by faults
	faults   map[int]fault
	queries  []string // raw query of every authorised request
	searches map[string]fakeSearch
}

type fakeSearch struct {
	matches    []int
	revinclude bool
	count      int
}

const fakeBase = "/fhir/v2"

func newFake(t *testing.T, key string, records []fakeRecord) *fakeFHIR {
	t.Helper()
	f := &fakeFHIR{t: t, key: key, records: records, faults: map[int]fault{}, searches: map[string]fakeSearch{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFHIR) baseURL() string { return f.srv.URL + fakeBase }

func (f *fakeFHIR) inject(n int, ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[n] = ft
}

func (f *fakeFHIR) stats() (hits, served int, queries []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits, f.served, append([]string(nil), f.queries...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/fhir+json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func outcome(code, diag string) map[string]any {
	return map[string]any{
		"resourceType": "OperationOutcome",
		"issue":        []any{map[string]any{"severity": "error", "code": code, "diagnostics": diag}},
	}
}

func (f *fakeFHIR) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits++
	got := r.Header.Get("ESANTE-API-KEY")
	if got != f.key {
		f.mu.Unlock()
		// Echoing the key is what a careless gateway might do; the client
		// must redact it.
		writeJSON(w, http.StatusUnauthorized, outcome("security", "invalid ESANTE-API-KEY "+got))
		return
	}
	f.served++
	n := f.served
	f.queries = append(f.queries, r.URL.RawQuery)
	ft, faulty := f.faults[n]
	f.mu.Unlock()

	if faulty {
		if ft.hook != nil {
			ft.hook()
		}
		switch {
		case ft.slow:
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		case ft.status != 0:
			if ft.retryAfter != "" {
				w.Header().Set("Retry-After", ft.retryAfter)
			}
			body := ft.body
			if body == "" {
				body = "temporarily unavailable; key was " + got
			}
			writeJSON(w, ft.status, outcome("transient", body))
			return
		case ft.malformed:
			w.Header().Set("Content-Type", "application/fhir+json")
			_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Practi`))
			return
		}
	}

	q := r.URL.Query()
	// Like HAPI, page links go to the base with _getpages, searches to the
	// resource type.
	if r.URL.Path != fakeBase+"/Practitioner" && !(r.URL.Path == fakeBase && q.Has("_getpages")) {
		writeJSON(w, http.StatusNotFound, outcome("not-found", "unknown path "+r.URL.Path))
		return
	}
	var id string
	var s fakeSearch
	offset := 0
	if id = q.Get("_getpages"); id != "" {
		f.mu.Lock()
		var ok bool
		s, ok = f.searches[id]
		f.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusGone, outcome("not-found", "search expired"))
			return
		}
		offset, _ = strconv.Atoi(q.Get("_getpagesoffset"))
	} else {
		var err error
		s, err = f.newSearch(q.Get("_lastUpdated"), q.Get("_revinclude"), q.Get("_count"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, outcome("invalid", err.Error()))
			return
		}
		f.mu.Lock()
		id = fmt.Sprintf("search-%d", len(f.searches)+1)
		f.searches[id] = s
		f.mu.Unlock()
	}
	end := min(offset+s.count, len(s.matches))
	var entries []any
	for _, i := range s.matches[offset:end] {
		rec := f.records[i]
		entries = append(entries, map[string]any{
			"fullUrl":  f.baseURL() + "/Practitioner/" + rec.ID,
			"resource": rec.Resource,
			"search":   map[string]any{"mode": "match"},
		})
		if s.revinclude {
			for j, role := range rec.Roles {
				entries = append(entries, map[string]any{
					"fullUrl":  fmt.Sprintf("%s/PractitionerRole/%s-%d", f.baseURL(), rec.ID, j),
					"resource": role,
					"search":   map[string]any{"mode": "include"},
				})
			}
		}
	}
	links := []any{map[string]any{"relation": "self", "url": f.srv.URL + r.URL.RequestURI()}}
	if end < len(s.matches) {
		next := fmt.Sprintf("%s?_getpages=%s&_getpagesoffset=%d&_count=%d&_bundletype=searchset", f.baseURL(), id, end, s.count)
		if faulty && ft.foreignURL != "" {
			next = ft.foreignURL
		}
		links = append(links, map[string]any{"relation": "next", "url": next})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"resourceType": "Bundle",
		"id":           fmt.Sprintf("%s-%d", id, offset),
		"meta":         map[string]any{"lastUpdated": time.Now().UTC().Format(time.RFC3339)},
		"type":         "searchset",
		"total":        len(s.matches),
		"link":         links,
		"entry":        entries,
	})
}

func (f *fakeFHIR) newSearch(lastUpdated, revinclude, count string) (fakeSearch, error) {
	s := fakeSearch{count: 50, revinclude: revinclude == "PractitionerRole:practitioner"}
	if count != "" {
		c, err := strconv.Atoi(count)
		if err != nil || c <= 0 {
			return s, fmt.Errorf("bad _count %q", count)
		}
		s.count = c
	}
	var since time.Time
	if lastUpdated != "" {
		v, ok := strings.CutPrefix(lastUpdated, "ge")
		if !ok {
			return s, fmt.Errorf("fake only supports ge in _lastUpdated, got %q", lastUpdated)
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return s, fmt.Errorf("bad _lastUpdated: %w", err)
		}
		since = t
	}
	for i, rec := range f.records {
		if !rec.LastUpdated.Before(since) {
			s.matches = append(s.matches, i)
		}
	}
	return s, nil
}

// luhnCheckDigit returns the digit that makes base+digit pass the Luhn test.
func luhnCheckDigit(base string) byte {
	sum := 0
	// Digits of base are weighted as if the check digit were already
	// appended, so the rightmost digit of base is doubled.
	for i := 0; i < len(base); i++ {
		d := int(base[len(base)-1-i] - '0')
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

var (
	fakeFamilies = []string{"LEFICTIF", "DUPONT-TEST", "ESSAI", "EXEMPLE", "MODELE", "FACTICE", "SIMULE"}
	fakeGivens   = []string{"JEANNE", "LUC", "SOPHIE", "KARIM", "INES", "THEO", "LINA"}
	fakeProfs    = [][2]string{{"10", "Médecin"}, {"60", "Infirmier"}, {"21", "Pharmacien"}, {"50", "Sage-Femme"}}
)

// genRecords builds n fictional practitioners updated one hour apart from
// start. RPPS numbers live in the 109999xxxxx range, with a computed check
// digit.
func genRecords(t *testing.T, n int, start time.Time) []fakeRecord {
	t.Helper()
	var out []fakeRecord
	for i := 0; i < n; i++ {
		base := fmt.Sprintf("109999%04d", i)
		rpps := base + string(luhnCheckDigit(base))
		id := fmt.Sprintf("003-%d", 100+i)
		updated := start.Add(time.Duration(i) * time.Hour)
		prof := fakeProfs[i%len(fakeProfs)]
		pract := map[string]any{
			"resourceType": "Practitioner",
			"id":           id,
			"meta":         map[string]any{"lastUpdated": updated.Format(time.RFC3339), "versionId": "1"},
			"identifier": []any{
				map[string]any{"use": "official", "type": map[string]any{"coding": []any{map[string]any{"code": "IDNPS"}}}, "system": SystemIDNat, "value": "8" + rpps},
				map[string]any{"use": "official", "type": map[string]any{"coding": []any{map[string]any{"code": "RPPS"}}}, "system": SystemRPPS, "value": rpps},
			},
			"active": true,
			"name":   []any{map[string]any{"family": fakeFamilies[i%len(fakeFamilies)], "given": []string{fakeGivens[i%len(fakeGivens)]}, "prefix": []string{"DR"}}},
		}
		role := map[string]any{
			"resourceType": "PractitionerRole",
			"id":           id + "-role",
			"active":       true,
			"practitioner": map[string]any{"reference": "Practitioner/" + id},
			"organization": map[string]any{"reference": fmt.Sprintf("Organization/org-%d", i%3), "display": fmt.Sprintf("Structure fictive %d", i%3)},
			"code":         []any{map[string]any{"coding": []any{map[string]any{"system": SystemProfession, "code": prof[0], "display": prof[1]}}}},
		}
		out = append(out, fakeRecord{ID: id, LastUpdated: updated, Resource: mustJSON(t, pract), Roles: []json.RawMessage{mustJSON(t, role)}})
	}
	return out
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadRecords reads testdata files made of {"practitioner": …, "roles": […]}
// objects, taking lastUpdated from the resource's meta.
func loadRecords(t *testing.T, path string) []fakeRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw []struct {
		Practitioner json.RawMessage   `json:"practitioner"`
		Roles        []json.RawMessage `json:"roles"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []fakeRecord
	for _, r := range raw {
		var head struct {
			ID   string `json:"id"`
			Meta struct {
				LastUpdated time.Time `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(r.Practitioner, &head); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, fakeRecord{ID: head.ID, LastUpdated: head.Meta.LastUpdated, Resource: r.Practitioner, Roles: r.Roles})
	}
	return out
}
