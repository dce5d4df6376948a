package gateway

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"github.com/tidwall/gjson"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/eimis-hub/eimis/internal/canonjson"
	"github.com/eimis-hub/eimis/schemas"
)

// ProtocolVersion is the Bridge Protocol version this gateway speaks.
const ProtocolVersion = 1

// schemaBase is the $id prefix of every schema file: the files' place in
// this repository, so the IDs resolve to something a vendor can read.
const schemaBase = "https://github.com/eimis-hub/eimis/schemas/bridge/v1/"

// inbound are the frame types a bridge may send.
var inbound = map[string]bool{
	"hello": true, "ack": true, "bind": true, "unbind": true, "create_room": true, "room_info": true, "history": true,
	"join": true, "invite": true, "leave": true, "send": true, "edit": true, "read_receipt": true,
	"typing": true, "directory_search": true, "upload": true,
}

// Frame is a frame from a bridge that passed its schema.
type Frame struct {
	Type string
	// ID is the request id ("" for hello and ack).
	ID string
	// Raw is the frame as received, for decoding into its request type.
	Raw []byte
}

// Decoder checks frames against the protocol's JSON Schemas. It is safe
// for concurrent use: compiled schemas are immutable.
type Decoder struct {
	maxBytes int
	byType   map[string]*jsonschema.Schema
	// names are the protocol's field names (every property a schema
	// declares): only these appear in a refusal's JSON pointer or in a
	// log line; anything else a bridge sends may be content.
	names map[string]bool
	// frame checks a whole frame; content checks the free JSON a bridge
	// passes into event content (info), which must be canonical JSON.
	frame, content canonjson.Rules
}

var printer = message.NewPrinter(language.English)

// NewDecoder compiles the schemas embedded in the binary. maxBytes is the
// frame size limit (0: no limit).
func NewDecoder(maxBytes int) (*Decoder, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// The schemas reference each other only; nothing is fetched.
	c.UseLoader(noLoader{})
	entries, err := fs.ReadDir(schemas.Bridge, schemas.BridgeV1Dir)
	if err != nil {
		return nil, fmt.Errorf("gateway: schemas: %w", err)
	}
	var names []string
	fieldNames := map[string]bool{}
	for _, e := range entries {
		raw, err := fs.ReadFile(schemas.Bridge, path.Join(schemas.BridgeV1Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("gateway: schema %s: %w", e.Name(), err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("gateway: schema %s: %w", e.Name(), err)
		}
		collectNames(doc, fieldNames)
		if err := c.AddResource(schemaBase+e.Name(), doc); err != nil {
			return nil, fmt.Errorf("gateway: schema %s: %w", e.Name(), err)
		}
		names = append(names, e.Name())
	}
	d := &Decoder{maxBytes: maxBytes, byType: map[string]*jsonschema.Schema{}, names: fieldNames}
	isName := func(n string) bool { return fieldNames[n] }
	// Protocol integers (protocol, timeout_ms, limit) are JSON Schema
	// integers, 1e3 included, and never reach an event: only the free
	// JSON is held to canonical JSON's number rules.
	d.frame = canonjson.Rules{AnyNumber: true, Names: isName}
	d.content = canonjson.Rules{Names: isName}
	for _, n := range names {
		if n == "common.json" {
			continue
		}
		sch, err := c.Compile(schemaBase + n)
		if err != nil {
			return nil, fmt.Errorf("gateway: compile schema %s: %w", n, err)
		}
		d.byType[strings.TrimSuffix(n, ".json")] = sch
	}
	for t := range inbound {
		if d.byType[t] == nil {
			return nil, fmt.Errorf("gateway: no schema for frame type %q", t)
		}
	}
	return d, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not embedded", url)
}

// Decode checks one frame from a bridge. A refusal is an *Error naming
// the field at fault; its second result is the frame's request id when
// one could be read, so the bridge can match the error to its request.
func (d *Decoder) Decode(data []byte) (Frame, string, *Error) {
	if d.maxBytes > 0 && len(data) > d.maxBytes {
		return Frame{}, "", errf(CodeFrameTooLarge, "", fmt.Sprintf("frame of %d bytes; the limit is %d", len(data), d.maxBytes))
	}
	// Before the schema: valid UTF-8 (escapes included), bounded nesting,
	// each member named once, so the schema and the request structs see
	// the same single value and nothing 5,000 levels deep is passed on.
	if err := d.frame.Check(data); err != nil {
		ce, _ := canonjson.As(err)
		switch {
		case ce == nil || ce.Class == canonjson.Syntax:
			return Frame{}, "", errf(CodeBadFrame, "", "the frame is not JSON")
		case ce.Class == canonjson.InvalidUTF8:
			return Frame{}, "", errf(CodeBadFrame, "", "the frame is not valid UTF-8")
		}
		return Frame{}, gjsonID(data), errf(CodeInvalidField, ce.Path, truncate(ce.Path+": "+ce.Class.String(), 300))
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return Frame{}, "", errf(CodeBadFrame, "", "the frame is not JSON")
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return Frame{}, "", errf(CodeBadFrame, "", "the frame must be a JSON object")
	}
	reqID, _ := obj["id"].(string)
	if len(reqID) > 64 {
		reqID = ""
	}
	typ, ok := obj["type"].(string)
	if !ok {
		return Frame{}, reqID, errf(CodeInvalidField, "/type", "type must be a string naming the frame type")
	}
	sch := d.byType[typ]
	if !inbound[typ] || sch == nil {
		return Frame{}, reqID, errf(CodeUnknownType, "/type", fmt.Sprintf("unknown frame type %q", truncate(typ, 64)))
	}
	if err := sch.Validate(doc); err != nil {
		return Frame{}, reqID, schemaError(err)
	}
	if info := gjson.GetBytes(data, "info"); info.Exists() {
		// The one free object a bridge passes into event content.
		if err := d.content.Check([]byte(info.Raw)); err != nil {
			ce, _ := canonjson.As(err)
			field := "/info"
			if ce != nil {
				field += ce.Path
			}
			return Frame{}, reqID, errf(CodeInvalidField, field, truncate(field+": must be canonical JSON (integers within ±(2^53−1), no fractions or exponents)", 300))
		}
	}
	return Frame{Type: typ, ID: reqID, Raw: data}, reqID, nil
}

// gjsonID reads a frame's request id, if it is a short string.
func gjsonID(data []byte) string {
	if id := gjson.GetBytes(data, "id"); id.Type == gjson.String && len(id.Str) <= 64 {
		return id.Str
	}
	return ""
}

// collectNames adds every property name a schema declares.
func collectNames(doc any, into map[string]bool) {
	switch v := doc.(type) {
	case map[string]any:
		for k, sub := range v {
			if props, ok := sub.(map[string]any); ok && k == "properties" {
				for name := range props {
					into[name] = true
				}
			}
			collectNames(sub, into)
		}
	case []any:
		for _, sub := range v {
			collectNames(sub, into)
		}
	}
}

// SafeField is a JSON pointer with the member names that are not the
// protocol's masked ("*"): what a log line may say of a refused field.
func (d *Decoder) SafeField(ptr string) string {
	if ptr == "" {
		return ""
	}
	toks := strings.Split(ptr[1:], "/")
	for i, t := range toks {
		if t == "*" || d.names[strings.NewReplacer("~1", "/", "~0", "~").Replace(t)] {
			continue
		}
		if _, err := strconv.Atoi(t); err == nil {
			continue
		}
		toks[i] = "*"
	}
	return "/" + strings.Join(toks, "/")
}

// CheckOutgoing validates a frame the hub sends against its schema (tests
// hold the hub to its own protocol with it).
func (d *Decoder) CheckOutgoing(data []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	obj, _ := doc.(map[string]any)
	typ, _ := obj["type"].(string)
	sch := d.byType[typ]
	if sch == nil || inbound[typ] {
		return fmt.Errorf("no outgoing frame type %q", typ)
	}
	if err := sch.Validate(doc); err != nil {
		e := schemaError(err)
		return fmt.Errorf("%s at %s: %s", e.Code, e.Field, e.Message)
	}
	return nil
}

// schemaError turns a validation failure into the first specific
// problem: the deepest cause, whose instance location is the field.
func schemaError(err error) *Error {
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return errf(CodeInvalidField, "", err.Error())
	}
	leaf := ve
	for len(leaf.Causes) > 0 {
		leaf = leaf.Causes[0]
	}
	loc := leaf.InstanceLocation
	switch k := leaf.ErrorKind.(type) {
	case *kind.Required:
		if len(k.Missing) > 0 {
			loc = append(append([]string(nil), loc...), k.Missing[0])
		}
	case *kind.DependentRequired:
		if len(k.Missing) > 0 {
			loc = append(append([]string(nil), loc...), k.Missing[0])
		}
	case *kind.AdditionalProperties:
		if len(k.Properties) > 0 {
			loc = append(append([]string(nil), loc...), k.Properties[0])
		}
	case *kind.FalseSchema:
		// A property forbidden for this message type (e.g. url on a
		// text message): the location already names it.
	}
	ptr := pointer(loc)
	msg := leaf.ErrorKind.LocalizedString(printer)
	if _, ok := leaf.ErrorKind.(*kind.FalseSchema); ok {
		msg = "not allowed here"
	}
	return errf(CodeInvalidField, ptr, truncate(ptr+": "+msg, 300))
}

// pointer builds an RFC 6901 JSON pointer.
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return ""
	}
	r := strings.NewReplacer("~", "~0", "/", "~1")
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(r.Replace(t))
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
