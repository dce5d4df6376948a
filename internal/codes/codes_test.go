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

func TestRespError(t *testing.T) {
	cases := []struct {
		code, errcode string
		status        int
	}{
		{"EIMIS_NOT_IN_DIRECTORY", "M_FORBIDDEN", http.StatusForbidden},
		{"EIMIS_RATE_LIMITED", "M_LIMIT_EXCEEDED", http.StatusTooManyRequests},
		{"EIMIS_UNKNOWN_ROOM", "M_NOT_FOUND", http.StatusNotFound},
		// Deny when unsure: a code the table lacks is still a refusal.
		{"EIMIS_NO_SUCH_CODE", "M_FORBIDDEN", http.StatusForbidden},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			e := RespError(c.code, "100% sure")
			if e.ErrCode != c.errcode || e.StatusCode != c.status || e.Err != "100% sure" || e.ExtraData["eimis_code"] != c.code {
				t.Fatalf("got %+v", e)
			}
		})
	}
	// The shared base values are never written to.
	a := RespError("EIMIS_NOT_IN_DIRECTORY", "a")
	b := RespError("EIMIS_INACTIVE_PRACTITIONER", "b")
	if a.ExtraData["eimis_code"] == b.ExtraData["eimis_code"] {
		t.Fatal("two errors share their extra fields")
	}
}
