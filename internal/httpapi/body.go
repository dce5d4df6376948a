package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/canonjson"
	"github.com/eimis-hub/eimis/internal/errclass"
)

// Body is how an API reads JSON request bodies. Its answers are the
// spec's: M_TOO_LARGE for a body over Max, M_NOT_JSON for a body that is
// no JSON (a syntax error, invalid UTF-8, a lone surrogate), M_BAD_JSON
// for JSON the API refuses (not an object, a type mismatch, a member
// named twice, nested too deep, and what Check refuses). Messages name
// the fault's class and position, never the body's text.
type Body struct {
	// Max is the largest body accepted, in bytes.
	Max int64
	// Check validates the JSON text before it is decoded; nil is
	// canonjson.WellFormed. canonjson.Validate is for a body that ends up
	// in a signed event (event content, createRoom): it must be canonical
	// JSON too, integers within ±(2^53−1) and no floats.
	Check func([]byte) error
	// Required makes an empty body M_NOT_JSON; otherwise it is {}.
	Required bool
	// Schema is for bodies whose member names are the API's own, never
	// content (the admin API, the bindings APIs): unknown members are
	// refused (a typo such as "server_name" would otherwise be silently
	// dropped), and answers name the member at fault (with "field" for a
	// type mismatch). Without it, member names can be content (event
	// content, account data) and are never quoted.
	Schema bool
}

// Decode reads r's body into v (Read, then DecodeBytes).
func (b Body) Decode(r *http.Request, v any) *mautrix.RespError {
	body, e := b.Read(r)
	if e != nil {
		return e
	}
	return b.DecodeBytes(body, v)
}

// Read reads r's body, up to Max bytes.
func (b Body) Read(r *http.Request) ([]byte, *mautrix.RespError) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, b.Max+1))
	if err != nil {
		e := mautrix.MNotJSON.WithMessage("Could not read the request body")
		return nil, &e
	}
	return body, nil
}

// DecodeBytes decodes a JSON object body into v.
func (b Body) DecodeBytes(body []byte, v any) *mautrix.RespError {
	if int64(len(body)) > b.Max {
		e := mautrix.MTooLarge.WithMessage("Request body larger than %d bytes", b.Max)
		return &e
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		if b.Required {
			e := mautrix.MNotJSON.WithMessage("Request body is empty")
			return &e
		}
		trimmed = []byte("{}")
	}
	check := b.Check
	if check == nil {
		check = canonjson.WellFormed
	}
	if err := check(trimmed); err != nil {
		ce, ok := canonjson.As(err)
		if !ok || ce.NotJSON() {
			e := mautrix.MNotJSON.WithMessage("Request body is not JSON")
			return &e
		}
		e := mautrix.MBadJSON.WithMessage("Invalid JSON: %s", strings.TrimPrefix(ce.Error(), "canonjson: "))
		return &e
	}
	if trimmed[0] != '{' {
		e := mautrix.MBadJSON.WithMessage("Request body must be a JSON object")
		return &e
	}
	var err error
	if b.Schema {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	} else {
		err = json.Unmarshal(trimmed, v)
	}
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case b.Schema && errors.As(err, &typeErr) && typeErr.Field != "":
		e := mautrix.MBadJSON.WithMessage("%s: expected %s", typeErr.Field, typeErr.Type).
			WithExtraField("field", typeErr.Field)
		return &e
	case b.Schema:
		e := mautrix.MBadJSON.WithMessage("%s", strings.TrimPrefix(err.Error(), "json: "))
		return &e
	}
	e := mautrix.MBadJSON.WithMessage("Malformed JSON: %s", errclass.Of(err))
	return &e
}
