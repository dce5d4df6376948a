package httpapi

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/canonjson"
)

// maxBodyBytes is the Client-Server API's limit.
const maxBodyBytes = 1 << 20

var (
	jsonBody    = Body{Max: maxBodyBytes}
	contentBody = Body{Max: maxBodyBytes, Check: canonjson.Validate}
)

func decodeBody(body []byte, v any) *mautrix.RespError { return jsonBody.DecodeBytes(body, v) }

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
		{"invalid UTF-8", "{\"name\":\"\xff\"}", "M_NOT_JSON"},
		{"lone surrogate", `{"name":"\ud800"}`, "M_NOT_JSON"},
		{"surrogate pair", `{"name":"\ud83d\ude00"}`, ""},
		{"5000 deep", `{"x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, "M_BAD_JSON"},
		{"duplicate member", `{"name":"a","name":"b"}`, "M_BAD_JSON"},
		{"float outside content", `{"name":"x","order":0.5}`, ""},
		{"two values", `{} {}`, "M_NOT_JSON"},
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

// TestDecodeContent: a body that becomes event content must be canonical
// JSON; the message never quotes the body.
func TestDecodeContent(t *testing.T) {
	const marker = "PATIENT-DUPONT-4242"
	cases := []struct {
		name, body string
		code       string
	}{
		{"message", `{"msgtype":"m.text","body":"` + marker + `","n":9007199254740991}`, ""},
		{"float", `{"` + marker + `":1.5}`, "M_BAD_JSON"},
		{"integral float", `{"` + marker + `":1.0}`, "M_BAD_JSON"},
		{"exponent", `{"` + marker + `":1e3}`, "M_BAD_JSON"},
		{"power level above the largest integer", `{"users":{"@a:hub.test":9007199254740992}}`, "M_BAD_JSON"},
		{"below the smallest integer", `{"` + marker + `":-9007199254740992}`, "M_BAD_JSON"},
		{"invalid UTF-8", "{\"body\":\"" + marker + "\xff\"}", "M_NOT_JSON"},
		{"lone surrogate", `{"body":"` + marker + `\udc00"}`, "M_NOT_JSON"},
		{"too deep", `{"` + marker + `":` + strings.Repeat(`{"a":`, canonjson.MaxDepth) + `1` + strings.Repeat(`}`, canonjson.MaxDepth) + `}`, "M_BAD_JSON"},
		{"syntax", `{"` + marker + `":`, "M_NOT_JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var v map[string]any
			e := contentBody.DecodeBytes([]byte(c.body), &v)
			switch {
			case c.code == "" && e != nil:
				t.Fatalf("unexpected error %s: %s", e.ErrCode, e.Err)
			case c.code != "" && (e == nil || e.ErrCode != c.code):
				t.Fatalf("got %v, want %s", e, c.code)
			case e != nil && strings.Contains(e.Err, marker):
				t.Fatalf("message quotes the body: %s", e.Err)
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

// TestBodyOptions: Required, Schema and Max as the admin and bindings
// APIs use them, read from a request.
func TestBodyOptions(t *testing.T) {
	type op struct {
		ID      string   `json:"id"`
		Servers []string `json:"server_names"`
	}
	schema := Body{Max: 64, Schema: true}
	required := Body{Max: 64, Required: true}
	for _, c := range []struct {
		name  string
		b     Body
		body  string
		code  string
		field string // the "field" of the answer
		names string // text the message must contain
	}{
		{"empty is {}", schema, "", "", "", ""},
		{"empty refused", required, " ", "M_NOT_JSON", "", ""},
		{"unknown member refused and named", schema, `{"server_name":["x"]}`, "M_BAD_JSON", "", "server_name"},
		{"unknown member ignored", required, `{"server_name":["x"]}`, "", "", ""},
		{"type mismatch named", schema, `{"server_names":"x"}`, "M_BAD_JSON", "server_names", "server_names"},
		{"type mismatch not named without a schema", required, `{"server_names":"x"}`, "M_BAD_JSON", "", ""},
		{"array", schema, `["x"]`, "M_BAD_JSON", "", "object"},
		{"duplicate member", schema, `{"id":"a","id":"b"}`, "M_BAD_JSON", "", ""},
		{"too large", schema, `{"id":"` + strings.Repeat("a", 64) + `"}`, "M_TOO_LARGE", "", "64"},
		{"syntax", schema, `{"id":`, "M_NOT_JSON", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var v op
			e := c.b.Decode(httptest.NewRequest("POST", "/", strings.NewReader(c.body)), &v)
			switch {
			case c.code == "" && e != nil:
				t.Fatalf("unexpected error %s: %s", e.ErrCode, e.Err)
			case c.code == "":
				return
			case e == nil || e.ErrCode != c.code:
				t.Fatalf("got %v, want %s", e, c.code)
			}
			if f, _ := e.ExtraData["field"].(string); f != c.field || !strings.Contains(e.Err, c.names) {
				t.Fatalf("field %q message %q", f, e.Err)
			}
		})
	}
}
