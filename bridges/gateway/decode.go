package gateway

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/eimis-hub/eimis/schemas"
)

// ProtocolVersion is the Bridge Protocol version this gateway speaks.
const ProtocolVersion = 1

// schemaBase is the $id prefix of every schema file: the files' place in
// this repository, so the IDs resolve to something a vendor can read.
const schemaBase = "https://github.com/eimis-hub/eimis/schemas/bridge/v1/"

// inbound are the frame types a bridge may send.
var inbound = map[string]bool{
	"hello": true, "ack": true, "bind": true, "unbind": true, "create_room": true, "room_info": true,
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
	for _, e := range entries {
		raw, err := fs.ReadFile(schemas.Bridge, path.Join(schemas.BridgeV1Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("gateway: schema %s: %w", e.Name(), err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("gateway: schema %s: %w", e.Name(), err)
		}
		if err := c.AddResource(schemaBase+e.Name(), doc); err != nil {
			return nil, fmt.Errorf("gateway: schema %s: %w", e.Name(), err)
		}
		names = append(names, e.Name())
	}
	d := &Decoder{maxBytes: maxBytes, byType: map[string]*jsonschema.Schema{}}
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
	if !utf8.Valid(data) {
		return Frame{}, "", errf(CodeBadFrame, "", "the frame is not valid UTF-8")
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
	return Frame{Type: typ, ID: reqID, Raw: data}, reqID, nil
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
