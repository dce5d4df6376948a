package canonjson

import (
	"crypto/ed25519"
	"encoding/json/jsontext"
	"regexp"
	"strings"
	"testing"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

func nested(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1)
}

func nestedArrays(depth int) string {
	return strings.Repeat(`[`, depth) + strings.Repeat(`]`, depth)
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name, in string
		class    Class // 0: accepted
		path     string
	}{
		{"message", `{"msgtype":"m.text","body":"hi","n":[1,-2,0,true,null,{"x":"y"}]}`, 0, ""},
		{"whitespace around", " \n{\"a\" : 1 }\t ", 0, ""},
		{"scalar", `"x"`, 0, ""},
		{"largest integer", `{"a":9007199254740991}`, 0, ""},
		{"smallest integer", `{"a":-9007199254740991}`, 0, ""},
		{"valid surrogate pair", `{"a":"\ud83d\ude00"}`, 0, ""},
		{"NUL escape", `{"a":"\u0000"}`, 0, ""},
		{"replacement character", "{\"a\":\"\uFFFD\xef\xbf\xbd\"}", 0, ""},
		{"escaped names differ", `{"a":1,"\u0062":2}`, 0, ""},
		{"deepest object", nested(MaxDepth), 0, ""},
		{"deepest array", nestedArrays(MaxDepth), 0, ""},

		{"float", `{"a":1.0}`, Float, "/*"},
		{"exponent", `{"a":1e3}`, Float, "/*"},
		{"capital exponent", `{"a":[5,1E3]}`, Float, "/*/1"},
		{"negative fraction", `[-0.5]`, Float, "/0"},
		{"2^53", `{"a":9007199254740992}`, IntRange, "/*"},
		{"-2^53", `{"a":{"b":-9007199254740992}}`, IntRange, "/*/*"},
		{"huge", `{"a":123456789012345678901234567890}`, IntRange, "/*"},
		{"negative zero", `{"a":-0}`, IntRange, "/*"},
		{"too deep object", nested(MaxDepth + 1), TooDeep, strings.Repeat("/*", MaxDepth)},
		{"too deep array", nestedArrays(MaxDepth + 1), TooDeep, "/0" + strings.Repeat("/0", MaxDepth-1)},
		{"5000 deep", nestedArrays(5000), TooDeep, "/0" + strings.Repeat("/0", MaxDepth-1)},
		{"duplicate", `{"a":1,"a":2}`, DuplicateName, ""},
		{"duplicate through an escape", `{"b":{"a":1,"\u0061":2}}`, DuplicateName, ""},
		{"lone high surrogate", `{"a":"\ud800"}`, InvalidUTF8, "/*"},
		{"lone low surrogate", `{"a":"x\udc00y"}`, InvalidUTF8, "/*"},
		{"reversed pair", `["\udc00\ud800"]`, InvalidUTF8, "/0"},
		{"high then not low", `["\ud800\u0041"]`, InvalidUTF8, "/0"},
		{"surrogate in a name", `{"\ud800":1}`, InvalidUTF8, ""},
		{"invalid byte", "{\"a\":\"\xff\"}", InvalidUTF8, "/*"},
		{"invalid byte in a name", "{\"\xc3\":1}", InvalidUTF8, ""},
		{"truncated", `{"a":`, Syntax, ""},
		{"empty", ``, Syntax, ""},
		{"trailing comma", `{"a":1,}`, Syntax, ""},
		{"two values", `{} {}`, Syntax, ""},
		{"leading zero", `[01]`, Syntax, ""},
		{"NaN", `[NaN]`, Syntax, ""},
		{"bad escape", `["\x"]`, Syntax, ""},
		{"short unicode escape", `["\u12"]`, Syntax, ""},
		{"raw control character", "[\"a\nb\"]", Syntax, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate([]byte(c.in))
			if c.class == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			e, ok := As(err)
			if !ok {
				t.Fatalf("got %v, want class %v", err, c.class)
			}
			if e.Class != c.class {
				t.Fatalf("class %v, want %v (%v)", e.Class, c.class, e)
			}
			if c.path != "" && e.Path != c.path {
				t.Fatalf("path %q, want %q", e.Path, c.path)
			}
			if e.NotJSON() != (c.class == Syntax || c.class == InvalidUTF8) {
				t.Fatalf("NotJSON() = %v for %v", e.NotJSON(), e.Class)
			}
		})
	}
}

func TestWellFormedAcceptsAnyNumber(t *testing.T) {
	for _, in := range []string{`{"order":0.25}`, `[1e400]`, `[-0]`, `[123456789012345678901234567890]`} {
		if err := WellFormed([]byte(in)); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
	for _, in := range []string{"[\"\xff\"]", `["\ud800"]`, nestedArrays(MaxDepth + 1), `{"a":1,"a":1}`, `{`} {
		if err := WellFormed([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestNamesInPath: protocol names appear in the path, anything else is
// masked, and no error text ever quotes the input.
func TestNamesInPath(t *testing.T) {
	r := Rules{Names: func(s string) bool { return s == "info" || s == "size" }}
	cases := []struct{ in, path string }{
		{`{"info":{"size":1.5}}`, "/info/size"},
		{`{"info":{"secret-patient":1.5}}`, "/info/*"},
		{`{"a/b":{"c~d":[0,1.5]}}`, "/*/*/1"},
	}
	for _, c := range cases {
		e, ok := As(r.Check([]byte(c.in)))
		if !ok || e.Path != c.path {
			t.Errorf("%s: got %v, want path %q", c.in, e, c.path)
		}
	}
	e, _ := As(Rules{Names: func(string) bool { return true }}.Check([]byte(`{"a/b":{"c~d":1.5}}`)))
	if e == nil || e.Path != "/a~1b/c~0d" {
		t.Fatalf("escaped path: %v", e)
	}
}

func TestErrorTextIsContentFree(t *testing.T) {
	const marker = "PATIENT-DUPONT-4242"
	for _, in := range []string{
		`{"` + marker + `":1.5}`, `{"a":"` + marker + `\ud800"}`, `{"` + marker + `":1,"` + marker + `":2}`,
		`{"` + marker + `":` + nested(40) + `}`, `{"` + marker + `":` + marker + `}`, `{"` + marker + "\xff\":1}",
	} {
		err := Validate([]byte(in))
		if err == nil {
			t.Fatalf("%q accepted", in)
		}
		if strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), "PATIENT") {
			t.Fatalf("error text quotes the input: %v", err)
		}
	}
}

// errorText is the whole alphabet of an error with masked names.
var errorText = regexp.MustCompile(`^canonjson: [a-zA-Z0-9 -]+( at (/(\*|[0-9]+))+)? \(byte [0-9]+\)$`)

var (
	fuzzKey   = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	fuzzRoom  = id.RoomID("!room:hub.test")
	fuzzKeyID = id.KeyID("ed25519:fuzz")
)

// FuzzValidate: whatever the validator accepts, mautrix's canonical JSON
// and PDU signing (what the room server does with content) accept too;
// and an error never quotes the input.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"msgtype":"m.text","body":"hi"}`, `{"a":1.0}`, `{"a":9007199254740992}`, `{"a":-0}`,
		`{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`, `{"a":1,"\u0061":2}`, nested(MaxDepth), nested(MaxDepth + 1),
		`{"users":{"@a:b":9007199254740991}}`, "{\"a\":\"\xff\"}", `[1e3]`, `"x"`, `{"a":"\u0000\/"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Validate(data)
		if err != nil {
			e, ok := As(err)
			if !ok {
				t.Fatalf("not an *Error: %T", err)
			}
			if !errorText.MatchString(e.Error()) {
				t.Fatalf("error text %q may carry content", e.Error())
			}
			return
		}
		if _, err := canonicaljson.Marshal(jsontext.Value(data)); err != nil {
			t.Fatalf("accepted %q, canonical JSON refuses it: %v", data, err)
		}
		if len(data) == 0 || jsontext.Value(data).Kind() != '{' {
			return
		}
		p := &pdu.PDU{
			Type: "m.room.message", Sender: "@a:hub.test", RoomID: fuzzRoom, Content: jsontext.Value(data),
			OriginServerTS: 1, Depth: 2, PrevEvents: []id.EventID{"$p"}, AuthEvents: []id.EventID{"$a"},
		}
		if err := p.Sign(id.RoomV11, "hub.test", fuzzKeyID, fuzzKey); err != nil {
			t.Fatalf("accepted %q, signing fails: %v", data, err)
		}
		if _, err := p.GetEventID(id.RoomV11); err != nil {
			t.Fatalf("accepted %q, no event ID: %v", data, err)
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	content := []byte(`{"msgtype":"m.text","body":"a message of a typical length for a clinical chat","m.relates_to":{"m.in_reply_to":{"event_id":"$abc"}},"n":12345}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if err := Validate(content); err != nil {
			b.Fatal(err)
		}
	}
}
