// Package canonjson checks that JSON is acceptable as Matrix event
// content before anything is built from it: valid UTF-8 (escapes
// included), integers only, within ±(2^53−1), bounded nesting and unique
// member names. What passes can be hashed and signed as canonical JSON,
// so a bad request is refused at its door with M_BAD_JSON (or the Bridge
// Protocol's code) instead of failing inside the room writer.
//
// Errors never quote the input: they carry a class, a byte offset and a
// JSON pointer whose member names are masked unless the caller declares
// them protocol names. Keys and values of event content can be health
// data, and error texts end up in logs.
package canonjson

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"encoding/json/jsontext"
)

// MaxDepth is the deepest nesting accepted, counting the outermost
// object or array as level 1.
//
// Real Matrix content nests far less (a poll or an edit of a reply is
// about 6 levels). Event content is embedded again in larger documents
// (the PDU, unsigned.redacted_because, a Bridge Protocol event frame, an
// appservice transaction), and some consumers parse with a recursion
// limit (serde_json, used by Rust homeservers and bridges, stops at 128;
// mautrix's canonical JSON recurses once per level). 32 leaves those
// envelopes a wide margin while refusing the pathological (5,000 levels)
// at once.
const MaxDepth = 32

// MaxInt is the largest integer canonical JSON allows (2^53−1); -MaxInt
// is the smallest.
const MaxInt = 1<<53 - 1

// Class says what is wrong, without saying with what.
type Class uint8

// Classes of faults.
const (
	// Syntax: not JSON (or more than one JSON value).
	Syntax Class = iota + 1
	// InvalidUTF8: bytes that are not UTF-8, or an escape naming a lone
	// UTF-16 surrogate (\ud800).
	InvalidUTF8
	// Float: a number with a fraction or an exponent (1.0, 1e3).
	Float
	// IntRange: an integer outside ±(2^53−1), or -0.
	IntRange
	// TooDeep: objects and arrays nested deeper than the limit.
	TooDeep
	// DuplicateName: an object names the same member twice.
	DuplicateName
)

var classNames = [...]string{
	Syntax:        "syntax error",
	InvalidUTF8:   "invalid UTF-8",
	Float:         "number with a fraction or an exponent",
	IntRange:      "integer out of range",
	TooDeep:       "nested too deep",
	DuplicateName: "duplicate member name",
}

func (c Class) String() string {
	if int(c) < len(classNames) && classNames[c] != "" {
		return classNames[c]
	}
	return "class " + strconv.Itoa(int(c))
}

// Error is a refusal. Its text holds no byte of the input.
type Error struct {
	Class Class
	// Offset is the byte offset in the input where the fault was seen.
	Offset int64
	// Path is the JSON pointer (RFC 6901) of the value at fault. Member
	// names appear only when Rules.Names allows them; the others are "*".
	Path string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("canonjson: ")
	b.WriteString(e.Class.String())
	if e.Path != "" {
		b.WriteString(" at ")
		b.WriteString(e.Path)
	}
	b.WriteString(" (byte ")
	b.WriteString(strconv.FormatInt(e.Offset, 10))
	b.WriteString(")")
	return b.String()
}

// NotJSON reports whether the input is not JSON at all (M_NOT_JSON), as
// opposed to JSON that Matrix refuses (M_BAD_JSON).
func (e *Error) NotJSON() bool { return e.Class == Syntax || e.Class == InvalidUTF8 }

// ErrorClass is the error's text: it is content-free already.
func (e *Error) ErrorClass() string { return e.Error() }

// As returns the *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Rules say what to check.
type Rules struct {
	// AnyNumber accepts every JSON number: for request bodies that are
	// not event content (a room tag's order is a float).
	AnyNumber bool
	// MaxDepth bounds nesting; 0 means MaxDepth.
	MaxDepth int
	// Names reports member names that may appear in an error's path
	// (a protocol's own field names). Nil masks them all.
	Names func(name string) bool
}

// Validate checks that data is acceptable as event content in canonical
// JSON. It does not require an object: callers check the top-level kind.
func Validate(data []byte) error { return Rules{}.Check(data) }

// WellFormed checks any request body: one JSON value, valid UTF-8,
// bounded nesting, unique member names; numbers are not restricted.
func WellFormed(data []byte) error { return Rules{AnyNumber: true}.Check(data) }

type checker struct {
	dec jsontext.Decoder
	in  bytes.Reader
}

var checkers = sync.Pool{New: func() any { return new(checker) }}

// Check applies the rules to data.
func (r Rules) Check(data []byte) error {
	maxDepth := r.MaxDepth
	if maxDepth <= 0 {
		maxDepth = MaxDepth
	}
	c := checkers.Get().(*checker)
	defer func() {
		c.in.Reset(nil) // do not pin data
		checkers.Put(c)
	}()
	d := &c.dec
	// AllowDuplicateNames and AllowInvalidUTF8 are false by default:
	// jsontext refuses both, lone surrogate escapes included.
	c.in.Reset(data)
	d.Reset(&c.in)
	for {
		switch d.PeekKind() {
		case '0':
			v, err := d.ReadValue()
			if err != nil {
				return r.syntactic(d, data, err)
			}
			if !r.AnyNumber {
				if class := checkNumber(v); class != 0 {
					return r.fail(d, class, d.InputOffset()-int64(len(v)), false)
				}
			}
		case '{', '[':
			if d.StackDepth() >= maxDepth {
				return r.fail(d, TooDeep, d.InputOffset(), true)
			}
			if _, err := d.ReadToken(); err != nil {
				return r.syntactic(d, data, err)
			}
		default:
			// Strings, literals, closing delimiters, and errors (which
			// PeekKind leaves for ReadToken to report).
			if _, err := d.ReadToken(); err != nil {
				return r.syntactic(d, data, err)
			}
		}
		if d.StackDepth() == 0 {
			// One complete top-level value: nothing may follow it.
			if _, err := d.ReadToken(); err != io.EOF {
				if err == nil {
					return &Error{Class: Syntax, Offset: d.InputOffset()}
				}
				return r.syntactic(d, data, err)
			}
			return nil
		}
	}
}

// checkNumber applies canonical JSON's rule to one number token (already
// valid JSON grammar): an integer, not -0, within ±(2^53−1).
func checkNumber(v []byte) Class {
	digits := v
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if bytes.ContainsAny(digits, ".eE") {
		return Float
	}
	if len(digits) > 16 { // 2^53−1 has 16 digits
		return IntRange
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil || n > MaxInt || (n == 0 && len(v) > 1) {
		return IntRange
	}
	return 0
}

// syntactic classifies an error of the jsontext decoder without keeping
// its text, which quotes the input.
func (r Rules) syntactic(d *jsontext.Decoder, data []byte, err error) error {
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		// io.ErrUnexpectedEOF and the like: truncated input.
		return &Error{Class: Syntax, Offset: int64(len(data))}
	}
	class := Syntax
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName):
		class = DuplicateName
	case badEncoding(data, se.ByteOffset):
		class = InvalidUTF8
	}
	return r.fail(d, class, se.ByteOffset, true)
}

// badEncoding reports whether the input at off (where jsontext stopped)
// is bytes that are not UTF-8 or an escape naming a lone surrogate: the
// two ways jsontext refuses a string that is otherwise well formed.
func badEncoding(data []byte, off int64) bool {
	if off < 0 || off >= int64(len(data)) {
		return false
	}
	s := data[off:]
	if s[0] != '\\' {
		r, size := utf8.DecodeRune(s)
		return r == utf8.RuneError && size == 1
	}
	if len(s) < 2 || s[1] != 'u' {
		return false
	}
	r1, ok := hex4(s[2:])
	if !ok || !utf16.IsSurrogate(r1) {
		return false
	}
	if r1 >= 0xdc00 || len(s) < 8 || s[6] != '\\' || s[7] != 'u' {
		return true
	}
	r2, ok := hex4(s[8:])
	return !ok || utf16.DecodeRune(r1, r2) == utf8.RuneError
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(n), err == nil
}

// fail builds an Error whose path is the decoder's position: the value
// about to be read when pending, else the one just read.
func (r Rules) fail(d *jsontext.Decoder, class Class, off int64, pending bool) *Error {
	return &Error{Class: class, Offset: off, Path: r.path(d, pending)}
}

func (r Rules) path(d *jsontext.Decoder, pending bool) string {
	depth := d.StackDepth()
	if depth == 0 {
		return ""
	}
	// The decoder's own pointer names the most recent value at each
	// level; only object levels' names are taken from it.
	var names []string
	for tok := range d.StackPointer().Tokens() {
		names = append(names, tok)
	}
	var b strings.Builder
	for i := 1; i <= depth; i++ {
		kind, n := d.StackIndex(i)
		b.WriteByte('/')
		if kind == '[' {
			idx := n - 1
			if i == depth && pending {
				idx = n
			}
			b.WriteString(strconv.FormatInt(max(idx, 0), 10))
			continue
		}
		if i-1 < len(names) && r.Names != nil && r.Names(names[i-1]) {
			b.WriteString(escapeToken(names[i-1]))
		} else {
			b.WriteByte('*')
		}
	}
	return b.String()
}

var tokenEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func escapeToken(s string) string { return tokenEscaper.Replace(s) }
