package clientapi

import (
	"encoding/json"
	"testing"
)

func TestDecodeBody(t *testing.T) {
	type target struct {
		Name   string   `json:"name"`
		Invite []string `json:"invite"`
	}
	cases := []struct {
		name, body string
		code       string // "" = success
	}{
		{"object", `{"name":"x","invite":["@a:b"]}`, ""},
		{"empty body is an empty object", ``, ""},
		{"whitespace", "  \n", ""},
		{"syntax error", `{"name":`, "M_NOT_JSON"},
		{"not json at all", `hello`, "M_NOT_JSON"},
		{"array", `["x"]`, "M_BAD_JSON"},
		{"string", `"x"`, "M_BAD_JSON"},
		{"wrong type", `{"invite":"@a:b"}`, "M_BAD_JSON"},
		{"number for string", `{"name":5}`, "M_BAD_JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var v target
			e := decodeBody([]byte(c.body), &v)
			switch {
			case c.code == "" && e != nil:
				t.Fatalf("unexpected error %s", e.ErrCode)
			case c.code != "" && (e == nil || e.ErrCode != c.code):
				t.Fatalf("got %v, want %s", e, c.code)
			}
		})
	}
}

func TestDecodeBodyTooLarge(t *testing.T) {
	big := make([]byte, maxBodyBytes+1)
	var v map[string]any
	if e := decodeBody(big, &v); e == nil || e.ErrCode != "M_TOO_LARGE" {
		t.Fatalf("got %v, want M_TOO_LARGE", e)
	}
}

// FuzzDecodeBody: any input gives either a decoded object or one of the
// spec's error codes, never a panic, and success only for JSON objects.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{}`, `{"msgtype":"m.text","body":"hi"}`, `[`, `{"a":{"b":[1,2,{"c":null}]}}`, `"\ud800"`, `{"a":1e400}`, "\x00", `{"invite":[1]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v struct {
			Invite  []string          `json:"invite"`
			Content map[string]any    `json:"content"`
			Extra   []json.RawMessage `json:"extra"`
		}
		e := decodeBody(body, &v)
		if e == nil {
			return
		}
		switch e.ErrCode {
		case "M_NOT_JSON", "M_BAD_JSON", "M_TOO_LARGE":
		default:
			t.Fatalf("unexpected error code %s", e.ErrCode)
		}
	})
}
