// Package errclass reduces an error to its class before it is logged.
//
// An error's text can carry what caused it: a JSON decoder quotes the
// bytes it choked on, mautrix's canonical JSON names the member and the
// number it refused, a database quotes the value that broke a constraint.
// When the input is event content, that is health data, and it must never
// reach a log line. Of keeps only what is known to be content-free: the
// class of each error in the chain (a sentinel's fixed text, a SQLSTATE,
// a JSON byte offset, a Go type), never a message built from data.
package errclass

import (
	"context"
	"database/sql"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Classer is an error whose class it states itself (its text must be
// content-free).
type Classer interface {
	ErrorClass() string
}

var (
	mu        sync.RWMutex
	sentinels = []error{
		context.Canceled, context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF,
		sql.ErrNoRows, sql.ErrTxDone, sql.ErrConnDone, net.ErrClosed, os.ErrDeadlineExceeded,
	}
)

// Register declares sentinel errors whose text is fixed (errors.New at
// package level): Of names them by their text.
func Register(errs ...error) {
	mu.Lock()
	defer mu.Unlock()
	sentinels = append(sentinels, errs...)
}

// Attr is the "err" attribute of a log line, reduced to its class.
func Attr(err error) slog.Attr { return slog.String("err", Of(err)) }

// Of describes err without any text that could come from data.
func Of(err error) string {
	if err == nil {
		return ""
	}
	var parts []string
	add := func(s string) {
		for _, p := range parts {
			if p == s {
				return
			}
		}
		parts = append(parts, s)
	}
	mu.RLock()
	known := sentinels
	mu.RUnlock()
	innermost := err
	walk(err, func(e error) bool {
		innermost = e
		if c, ok := e.(Classer); ok {
			add(c.ErrorClass())
			return false
		}
		if s, stop := describe(e); s != "" {
			add(s)
			if stop {
				return false
			}
		}
		for _, k := range known {
			if e == k {
				add(k.Error())
				return false
			}
		}
		return true
	})
	if len(parts) == 0 {
		return fmt.Sprintf("unclassified error (%T)", innermost)
	}
	return strings.Join(parts, ": ")
}

// walk visits err and what it wraps, depth first, until visit returns
// false for a branch.
func walk(err error, visit func(error) bool) {
	if err == nil || !visit(err) {
		return
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), visit)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, visit)
		}
	}
}

// describe knows the error types of the standard library and of the
// store drivers (matched by method, so this package imports neither).
// stop is false for wrappers whose cause is worth describing too.
func describe(e error) (desc string, stop bool) {
	switch t := e.(type) {
	case interface{ SQLState() string }: // pgconn.PgError
		return "postgres: SQLSTATE " + t.SQLState(), true
	case *json.SyntaxError:
		return "json: syntax error at byte " + strconv.FormatInt(t.Offset, 10), true
	case *json.UnmarshalTypeError:
		// Value is "number 5" or "string": keep the kind only; Field is a
		// path of member names, which can be content.
		kind, _, _ := strings.Cut(t.Value, " ")
		return fmt.Sprintf("json: cannot decode a JSON %s into %v", kind, t.Type), true
	case *jsontext.SyntacticError:
		return "json: syntax error at byte " + strconv.FormatInt(t.ByteOffset, 10), true
	case *jsonv2.SemanticError:
		return fmt.Sprintf("json: cannot convert a JSON %s to %v at byte %d", t.JSONKind, t.GoType, t.ByteOffset), true
	case *net.OpError:
		return "network: " + t.Op + " " + t.Net, false // and what it wraps
	case *url.Error:
		return "http: " + t.Op, false
	case *fs.PathError:
		return "file: " + t.Op, false
	case syscall.Errno:
		return t.Error(), true // a fixed text per number
	}
	if c, ok := e.(interface{ Code() int }); ok && strings.HasPrefix(fmt.Sprintf("%T", e), "*sqlite.") {
		return "sqlite: result code " + strconv.Itoa(c.Code()), true
	}
	return "", false
}
