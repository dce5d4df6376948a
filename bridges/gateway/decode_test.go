package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/eimis-hub/eimis/internal/canonjson"
)

// decodeInto decodes an accepted frame into its request struct, as the
// handlers do: a frame the schema accepts must fit the struct.
func decodeInto(f Frame) error {
	var v any
	switch f.Type {
	case "hello":
		v = &helloFrame{}
	case "ack":
		v = &ackFrame{}
	case "bind", "unbind":
		v = &bindReq{}
	case "create_room":
		v = &createRoomReq{}
	case "send", "edit":
		v = &sendReq{}
	case "directory_search":
		v = &searchReq{}
	case "upload":
		v = &uploadReq{}
	default:
		v = &roomReq{}
	}
	return json.Unmarshal(f.Raw, v)
}

// FuzzDecodeFrame: whatever a bridge sends, the decoder answers without
// panicking, with a known code and a JSON pointer, and what it accepts
// fits the request structs.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","protocol":1,"token":"eimisb_0123456789abcdef"}`,
		`{"type":"ack","cursor":"42"}`,
		`{"type":"bind","id":"1","idnat":"810000000017"}`,
		`{"type":"send","id":"2","user":"810000000017","room_id":"!r:hub","txn_id":"t","msgtype":"m.image","body":"x.png","url":"mxc://hub/abc","info":{"w":10,"h":"x"}}`,
		`{"type":"create_room","id":"3","user":"@810000000017:hub","invite":["810000000025","810000000025"]}`,
		`{"type":"typing","id":"4","user":"810000000017","room_id":"!r:hub","typing":true,"timeout_ms":1e3}`,
		`{"type":"directory_search","id":"5","query":"","limit":0}`,
		`{"type":"upload","id":"6","user":"810000000017","content_type":"image/png","data":"aGk="}`,
		`{"type":["send"]}`, `{"id":{"x":1}}`, `[]`, `null`, `"\ud800"`, "{\"type\":\"bind\",\"id\":\"\xff\"}",
		`{"type":"edit","id":"7","user":"810000000017","room_id":"!r:hub","txn_id":"t","event_id":"$e","body":"x","formatted_body":"y"}`,
		`{"type":"send","id":"2","user":"810000000017","room_id":"!r:hub","txn_id":"t","msgtype":"m.file","body":"x","url":"mxc://hub/abc","info":{"size":1.0,"x":[[{"y":1e30}]]}}`,
		`{"type":"bind","id":"1","idnat":"810000000017","idnat":"810000000025"}`,
	} {
		f.Add([]byte(s))
	}
	d, err := NewDecoder(1 << 16)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, _, e := d.Decode(data)
		if e != nil {
			if _, known := messages[Code(e.Code)]; !known {
				t.Fatalf("unknown error code %q", e.Code)
			}
			if e.Field != "" && !strings.HasPrefix(e.Field, "/") {
				t.Fatalf("field %q is not a JSON pointer", e.Field)
			}
			if e.Message == "" {
				t.Fatal("error without a message")
			}
			return
		}
		if !inbound[fr.Type] || string(fr.Raw) != string(data) {
			t.Fatalf("accepted frame %+v", fr)
		}
		if err := decodeInto(fr); err != nil {
			t.Fatalf("accepted %s but it does not decode: %v", data, err)
		}
		// What goes into event content can be signed as canonical JSON.
		if info := gjson.GetBytes(data, "info"); info.Exists() {
			if err := canonjson.Validate([]byte(info.Raw)); err != nil {
				t.Fatalf("accepted %s, its info is not canonical JSON: %v", data, err)
			}
		}
	})
}

func TestPointer(t *testing.T) {
	if got := pointer([]string{"a/b", "c~d", "0"}); got != "/a~1b/c~0d/0" {
		t.Fatalf("pointer = %q", got)
	}
	if got := truncate("é"+strings.Repeat("x", 10), 1); got != "…" {
		t.Fatalf("truncate cut a rune: %q", got)
	}
}

// TestDecodeCanonical: a frame must be well-formed JSON (UTF-8, escapes
// included; bounded nesting; each member once) and the free JSON it
// passes into event content (info) canonical JSON, or it is refused
// with a JSON pointer that names protocol fields only.
func TestDecodeCanonical(t *testing.T) {
	const marker = "PATIENT-DUPONT-4242"
	d, err := NewDecoder(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	send := func(info string) string {
		return `{"type":"send","id":"9","user":"810000000017","room_id":"!r:hub","txn_id":"t","msgtype":"m.image","body":"x.png","url":"mxc://hub/abc","info":` + info + `}`
	}
	cases := []struct {
		name, frame string
		code, field string // code "" = accepted
	}{
		{"info with integers", send(`{"w":10,"h":20,"size":9007199254740991,"mimetype":"image/png"}`), "", ""},
		{"protocol integer as a float", `{"type":"typing","id":"4","user":"810000000017","room_id":"!r:hub","typing":true,"timeout_ms":1e3}`, "", ""},
		{"float in info", send(`{"size":1.5}`), "EIMIS_INVALID_FIELD", "/info/size"},
		{"integral float in info", send(`{"w":10.0}`), "EIMIS_INVALID_FIELD", "/info/w"},
		{"integer beyond 2^53 in info", send(`{"size":9007199254740992}`), "EIMIS_INVALID_FIELD", "/info/size"},
		{"extra member of info", send(`{"` + marker + `":1e3}`), "EIMIS_INVALID_FIELD", "/info/*"},
		{"5000 deep info", send(`{"` + marker + `":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`), "EIMIS_INVALID_FIELD", "/info/*" + strings.Repeat("/0", 30)},
		{"duplicate member", `{"type":"bind","id":"1","idnat":"810000000017","idnat":"810000000025"}`, "EIMIS_INVALID_FIELD", ""},
		{"lone surrogate in body", `{"type":"send","id":"2","user":"810000000017","room_id":"!r:hub","txn_id":"t","msgtype":"m.text","body":"` + marker + `\ud800"}`, "EIMIS_BAD_FRAME", ""},
		{"invalid UTF-8", "{\"type\":\"bind\",\"id\":\"1\",\"idnat\":\"\xff\"}", "EIMIS_BAD_FRAME", ""},
		{"two values", `{"type":"ack","cursor":"1"} {}`, "EIMIS_BAD_FRAME", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, e := d.Decode([]byte(c.frame))
			if c.code == "" {
				if e != nil {
					t.Fatalf("refused: %v (field %s)", e, e.Field)
				}
				return
			}
			if e == nil || e.Code != c.code {
				t.Fatalf("got %v, want %s", e, c.code)
			}
			if c.field != "" && e.Field != c.field {
				t.Fatalf("field %q, want %q", e.Field, c.field)
			}
			if strings.Contains(e.Field+e.Message, marker) {
				t.Fatalf("the refusal quotes the frame: %s %s", e.Field, e.Message)
			}
		})
	}
}

func TestSafeField(t *testing.T) {
	d, err := NewDecoder(0)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"": "", "/info/size": "/info/size", "/invite/3": "/invite/3", "/PATIENT": "/*", "/info/x~1y/2": "/info/*/2",
	} {
		if got := d.SafeField(in); got != want {
			t.Errorf("SafeField(%q) = %q, want %q", in, got, want)
		}
	}
}
