package gateway

import (
	"encoding/json"
	"strings"
	"testing"
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
