package fhirtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// get runs one search and returns the status and the decoded Bundle.
func get(t *testing.T, s *Server, key string, q url.Values) (int, bundle) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.BaseURL()+"/Practitioner?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("ESANTE-API-KEY", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bundle
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, b
}

type bundle struct {
	Total int `json:"total"`
	Entry []struct {
		Resource struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Active       bool   `json:"active"`
			Meta         struct {
				VersionID string `json:"versionId"`
			} `json:"meta"`
		} `json:"resource"`
	} `json:"entry"`
}

func TestMutators(t *testing.T) {
	recs := Generate(3, t0)
	s := New(t, "k", recs)
	// Later than every generated record, earlier than any change made now.
	changed := url.Values{"_lastUpdated": {"ge" + t0.Add(100*time.Hour).Format(time.RFC3339)}}
	all := url.Values{}

	if _, b := get(t, s, "k", changed); b.Total != 0 {
		t.Fatalf("changes before any: %d", b.Total)
	}
	s.SetActive(recs[1].IDNat(), false)
	_, b := get(t, s, "k", changed)
	if b.Total != 1 || b.Entry[0].Resource.ID != recs[1].ID || b.Entry[0].Resource.Active || b.Entry[0].Resource.Meta.VersionID != "2" {
		t.Fatalf("after SetActive: %+v", b)
	}

	s.Put(Fictional(0, t0)) // same ID as recs[0]: a replacement
	s.Put(Fictional(7, t0)) // a newcomer
	if _, b := get(t, s, "k", all); b.Total != 4 {
		t.Errorf("after Put: %d records, want 4", b.Total)
	}
	if _, b := get(t, s, "k", changed); b.Total != 3 {
		t.Errorf("after Put: %d changed, want 3", b.Total)
	}
	s.Remove(recs[2].IDNat())
	if _, b := get(t, s, "k", all); b.Total != 3 {
		t.Errorf("after Remove: %d records, want 3", b.Total)
	}

	if code, _ := get(t, s, "other", all); code != http.StatusUnauthorized {
		t.Errorf("wrong key: HTTP %d", code)
	}
	s.SetDown(true)
	if code, _ := get(t, s, "k", all); code != http.StatusServiceUnavailable {
		t.Errorf("down: HTTP %d", code)
	}
	s.SetDown(false)
	if st := s.Stats(); st.Hits != 7 || st.Served != 5 || len(st.Queries) != 5 {
		t.Errorf("stats = %+v, want 7 hits of which 5 served (not the unauthorised one, nor the one while down)", st)
	}
}

func TestIDNat(t *testing.T) {
	tests := []struct {
		name, resource, want string
	}{
		{"by system", `{"identifier":[{"system":"` + SystemRPPS + `","value":"10999000010"},{"system":"` + SystemIDNat + `","value":"810999000010"}]}`, "810999000010"},
		{"by IDNPS type", `{"identifier":[{"type":{"coding":[{"code":"IDNPS"}]},"value":"0999000123"}]}`, "0999000123"},
		{"typed but another system", `{"identifier":[{"system":"urn:other","type":{"coding":[{"code":"IDNPS"}]},"value":"1"}]}`, ""},
		{"none", `{"identifier":[]}`, ""},
	}
	for _, tt := range tests {
		if got := (Record{Resource: json.RawMessage(tt.resource)}).IDNat(); got != tt.want {
			t.Errorf("%s: IDNat = %q, want %q", tt.name, got, tt.want)
		}
	}
}
