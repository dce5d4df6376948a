// Package fhirtest is a fake Annuaire Santé FHIR API (v2) for tests: of the
// fhir client itself, and of everything that syncs the directory through it
// (the sync, the CLI, the hub's periodic refresh).
//
// It mimics the gateway closely enough for the client: the ESANTE-API-KEY
// check, HAPI-style paging (_getpages/_getpagesoffset on the base URL),
// _lastUpdated=ge…, _revinclude=PractitionerRole:practitioner, faults
// injected by request number, a whole-server outage, and changes made while
// it runs (Put, SetActive, Remove) that incremental searches see.
//
// It deliberately does not import the fhir package: fhir's own tests import
// fhirtest, and a fake that restates the wire format on its own also catches
// a constant of the client changed by mistake.
package fhirtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Identifier and code systems as the Annuaire Santé sends them.
const (
	SystemIDNat      = "urn:oid:1.2.250.1.71.4.2.1"
	SystemRPPS       = "https://rpps.esante.gouv.fr"
	SystemProfession = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
)

// basePath is where the fake serves FHIR, like the gateway's /fhir/v2.
const basePath = "/fhir/v2"

// Record is one Practitioner of the fake directory and the roles that point
// at it.
type Record struct {
	ID          string            // logical id of the Practitioner
	LastUpdated time.Time         // what _lastUpdated filters on
	Resource    json.RawMessage   // the Practitioner resource
	Roles       []json.RawMessage // PractitionerRole resources referencing it
}

// IDNat is the record's national identifier, read from the Practitioner the
// way the client reads it (system SystemIDNat, or an unsystemed identifier
// typed IDNPS); "" if it has none.
func (r Record) IDNat() string {
	type coding struct {
		Code string `json:"code"`
	}
	var p struct {
		Identifier []struct {
			System string `json:"system"`
			Value  string `json:"value"`
			Type   struct {
				Coding []coding `json:"coding"`
			} `json:"type"`
		} `json:"identifier"`
	}
	if json.Unmarshal(r.Resource, &p) != nil {
		return ""
	}
	isIDNPS := func(c coding) bool { return c.Code == "IDNPS" }
	for _, id := range p.Identifier {
		if id.System == SystemIDNat || (id.System == "" && slices.ContainsFunc(id.Type.Coding, isIDNPS)) {
			return id.Value
		}
	}
	return ""
}

// Fault replaces the normal answer to one request.
type Fault struct {
	Status     int    // answer with this HTTP status and an OperationOutcome
	RetryAfter string // Retry-After header sent with Status
	// Body is the OperationOutcome's diagnostics; by default it echoes the
	// API key, as a careless gateway might, so tests see the client redact.
	Body       string
	Malformed  bool   // 200 with a truncated Bundle
	Slow       bool   // hold the answer until the client gives up
	ForeignURL string // serve the page, but with a next link to this URL
	Hook       func() // run when the fault fires, before answering
}

// Stats is what the fake has received so far.
type Stats struct {
	Hits    int      // every request: unauthorised, or while down, included
	Served  int      // authorised requests while up; Inject numbers these
	Queries []string // raw query of each served request, in order
}

// Server is a running fake. Its methods are safe for concurrent use, so
// tests may change the directory while a sync walks it.
type Server struct {
	t      testing.TB
	srv    *httptest.Server
	key    string
	closed chan struct{}

	mu       sync.Mutex
	records  []Record
	down     bool
	lastBump time.Time
	stats    Stats
	faults   map[int]Fault
	searches map[string]search
}

// search is a cached result set, as HAPI keeps one behind _getpages. It
// holds copies of the matched records, so changes made while a client pages
// through show up in the next search, not half-way through this one.
type search struct {
	matches    []Record
	revinclude bool
	count      int
}

// New starts a fake serving records (copied) that answers only apiKey. It
// stops when the test ends.
func New(t testing.TB, apiKey string, records []Record) *Server {
	t.Helper()
	s := &Server{
		t: t, key: apiKey, closed: make(chan struct{}),
		records: slices.Clone(records), faults: map[int]Fault{}, searches: map[string]search{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	// Cleanups run last-in first-out: release Slow handlers first, or
	// Close would wait for them.
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { close(s.closed) })
	return s
}

// BaseURL is the FHIR base to configure the client with.
func (s *Server) BaseURL() string { return s.srv.URL + basePath }

// Inject makes the n-th served request (counting from 1, see Stats.Served)
// answer with f instead.
func (s *Server) Inject(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[n] = f
}

// Stats returns a copy of what the fake has received.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Queries = slices.Clone(st.Queries)
	return st
}

// SetDown simulates an outage: while down, every request answers 503
// without a Retry-After, before the API key is even looked at, as a load
// balancer with no backend does.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Put adds rec, or replaces the record with the same ID, and marks it
// updated now (LastUpdated and the resource's meta), so that the next
// incremental search returns it.
func (s *Server) Put(rec Record) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Roles = slices.Clone(rec.Roles)
	if err := s.touch(&rec, nil); err != nil {
		s.t.Errorf("fhirtest: Put %s: %v", rec.ID, err)
		return
	}
	if i := slices.IndexFunc(s.records, func(r Record) bool { return r.ID == rec.ID }); i >= 0 {
		s.records[i] = rec
		return
	}
	s.records = append(s.records, rec)
}

// SetActive sets Practitioner.active of the record with this idNat and
// marks it updated now. An unknown idNat fails the test.
func (s *Server) SetActive(idNat string, active bool) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.records, func(r Record) bool { return r.IDNat() == idNat })
	if i < 0 {
		s.t.Errorf("fhirtest: SetActive: no practitioner %s", idNat)
		return
	}
	if err := s.touch(&s.records[i], map[string]any{"active": active}); err != nil {
		s.t.Errorf("fhirtest: SetActive %s: %v", idNat, err)
	}
}

// Remove deletes the record with this idNat from the directory. The real API
// does not report deletions to _lastUpdated searches, and neither does the
// fake: only a full read notices. An unknown idNat fails the test.
func (s *Server) Remove(idNat string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.records, func(r Record) bool { return r.IDNat() == idNat })
	if i < 0 {
		s.t.Errorf("fhirtest: Remove: no practitioner %s", idNat)
		return
	}
	s.records = slices.Delete(s.records, i, i+1)
}

// touch sets fields of rec's resource and stamps it as updated now, with a
// new versionId as the server would. Called with s.mu held.
func (s *Server) touch(rec *Record, fields map[string]any) error {
	var res map[string]any
	if err := json.Unmarshal(rec.Resource, &res); err != nil {
		return err
	}
	for k, v := range fields {
		res[k] = v
	}
	// Two changes in a row get distinct, increasing times even on a
	// coarse clock, so "updated after X" stays meaningful in tests.
	now := time.Now().UTC()
	if !now.After(s.lastBump) {
		now = s.lastBump.Add(time.Microsecond)
	}
	s.lastBump = now
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	version, _ := strconv.Atoi(fmt.Sprint(meta["versionId"]))
	meta["versionId"] = strconv.Itoa(version + 1)
	meta["lastUpdated"] = now.Format(time.RFC3339Nano)
	res["meta"] = meta
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	rec.Resource, rec.LastUpdated = b, now
	return nil
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

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.Hits++
	if s.down {
		s.mu.Unlock()
		writeJSON(w, http.StatusServiceUnavailable, outcome("transient", "no healthy upstream"))
		return
	}
	got := r.Header.Get("ESANTE-API-KEY")
	if got != s.key {
		s.mu.Unlock()
		// Echoing the key is what a careless gateway might do; the client
		// must redact it.
		writeJSON(w, http.StatusUnauthorized, outcome("security", "invalid ESANTE-API-KEY "+got))
		return
	}
	s.stats.Served++
	n := s.stats.Served
	s.stats.Queries = append(s.stats.Queries, r.URL.RawQuery)
	ft, faulty := s.faults[n]
	s.mu.Unlock()

	if faulty {
		if ft.Hook != nil {
			ft.Hook()
		}
		switch {
		case ft.Slow:
			select {
			case <-r.Context().Done():
			case <-s.closed:
			case <-time.After(30 * time.Second):
			}
			return
		case ft.Status != 0:
			if ft.RetryAfter != "" {
				w.Header().Set("Retry-After", ft.RetryAfter)
			}
			body := ft.Body
			if body == "" {
				body = "temporarily unavailable; key was " + got
			}
			writeJSON(w, ft.Status, outcome("transient", body))
			return
		case ft.Malformed:
			w.Header().Set("Content-Type", "application/fhir+json")
			_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Practi`))
			return
		}
	}

	q := r.URL.Query()
	// Like HAPI, page links go to the base with _getpages, searches to the
	// resource type.
	if r.URL.Path != basePath+"/Practitioner" && !(r.URL.Path == basePath && q.Has("_getpages")) {
		writeJSON(w, http.StatusNotFound, outcome("not-found", "unknown path "+r.URL.Path))
		return
	}
	var id string
	var sr search
	offset := 0
	if id = q.Get("_getpages"); id != "" {
		s.mu.Lock()
		var ok bool
		sr, ok = s.searches[id]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusGone, outcome("not-found", "search expired"))
			return
		}
		var err error
		if offset, err = strconv.Atoi(q.Get("_getpagesoffset")); err != nil || offset < 0 || offset > len(sr.matches) {
			writeJSON(w, http.StatusBadRequest, outcome("invalid", "bad _getpagesoffset"))
			return
		}
	} else {
		var err error
		s.mu.Lock()
		sr, err = s.newSearch(q.Get("_lastUpdated"), q.Get("_revinclude"), q.Get("_count"))
		if err == nil {
			id = fmt.Sprintf("search-%d", len(s.searches)+1)
			s.searches[id] = sr
		}
		s.mu.Unlock()
		if err != nil {
			writeJSON(w, http.StatusBadRequest, outcome("invalid", err.Error()))
			return
		}
	}
	end := min(offset+sr.count, len(sr.matches))
	entries := []any{}
	for _, rec := range sr.matches[offset:end] {
		entries = append(entries, map[string]any{
			"fullUrl":  s.BaseURL() + "/Practitioner/" + rec.ID,
			"resource": rec.Resource,
			"search":   map[string]any{"mode": "match"},
		})
		if sr.revinclude {
			for j, role := range rec.Roles {
				entries = append(entries, map[string]any{
					"fullUrl":  fmt.Sprintf("%s/PractitionerRole/%s-%d", s.BaseURL(), rec.ID, j),
					"resource": role,
					"search":   map[string]any{"mode": "include"},
				})
			}
		}
	}
	links := []any{map[string]any{"relation": "self", "url": s.srv.URL + r.URL.RequestURI()}}
	if end < len(sr.matches) {
		next := fmt.Sprintf("%s?_getpages=%s&_getpagesoffset=%d&_count=%d&_bundletype=searchset", s.BaseURL(), id, end, sr.count)
		if faulty && ft.ForeignURL != "" {
			next = ft.ForeignURL
		}
		links = append(links, map[string]any{"relation": "next", "url": next})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"resourceType": "Bundle",
		"id":           fmt.Sprintf("%s-%d", id, offset),
		"meta":         map[string]any{"lastUpdated": time.Now().UTC().Format(time.RFC3339)},
		"type":         "searchset",
		"total":        len(sr.matches),
		"link":         links,
		"entry":        entries,
	})
}

// newSearch runs a Practitioner search. Called with s.mu held.
func (s *Server) newSearch(lastUpdated, revinclude, count string) (search, error) {
	sr := search{count: 50, revinclude: revinclude == "PractitionerRole:practitioner"}
	if count != "" {
		c, err := strconv.Atoi(count)
		if err != nil || c <= 0 {
			return sr, fmt.Errorf("bad _count %q", count)
		}
		sr.count = c
	}
	var since time.Time
	if lastUpdated != "" {
		v, ok := strings.CutPrefix(lastUpdated, "ge")
		if !ok {
			return sr, fmt.Errorf("fake only supports ge in _lastUpdated, got %q", lastUpdated)
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return sr, fmt.Errorf("bad _lastUpdated: %w", err)
		}
		since = t
	}
	for _, rec := range s.records {
		if !rec.LastUpdated.Before(since) {
			sr.matches = append(sr.matches, rec)
		}
	}
	return sr, nil
}
