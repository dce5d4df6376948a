package codes

import (
	"net/http"
	"testing"
)

func TestLookup(t *testing.T) {
	cases := []struct {
		code, errcode string
		status        int
		refusal       bool
	}{
		{"EIMIS_INACTIVE_PRACTITIONER", "M_FORBIDDEN", http.StatusForbidden, true},
		{"EIMIS_RATE_LIMITED", "M_LIMIT_EXCEEDED", http.StatusTooManyRequests, true},
		{"EIMIS_OPERATOR_SUSPENDED", "M_FORBIDDEN", http.StatusForbidden, true},
		{"EIMIS_BAD_FRAME", "M_BAD_JSON", http.StatusBadRequest, false},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			i, ok := Lookup(c.code)
			if !ok {
				t.Fatal("not found")
			}
			if i.Code != c.code || i.Errcode != c.errcode || i.HTTPStatus != c.status || i.Refusal != c.refusal {
				t.Fatalf("got %+v", i)
			}
		})
	}
	if _, ok := Lookup("EIMIS_NO_SUCH_CODE"); ok {
		t.Fatal("an unknown code was found")
	}
}

func TestAll(t *testing.T) {
	all := All()
	if len(all) == 0 || all[0].Code != "EIMIS_NOT_A_PRACTITIONER_ID" {
		t.Fatalf("the table does not start with the oldest code: %v", all)
	}
	all[0].Code = "changed"
	if All()[0].Code != "EIMIS_NOT_A_PRACTITIONER_ID" {
		t.Fatal("All shares the table")
	}
	for _, i := range all {
		if i.Message.EN == "" || i.Message.FR == "" {
			t.Errorf("%s lacks a text", i.Code)
		}
	}
}

func TestTextIn(t *testing.T) {
	tx := Text{EN: "unknown room", FR: "salon inconnu"}
	for lang, want := range map[string]string{"fr": "salon inconnu", "en": "unknown room", "de": "unknown room", "": "unknown room"} {
		if got := tx.In(lang); got != want {
			t.Errorf("In(%q) = %q, want %q", lang, got, want)
		}
	}
	if got := (Text{EN: "x"}).In("fr"); got != "x" {
		t.Errorf("a missing French text falls back to English, got %q", got)
	}
}
