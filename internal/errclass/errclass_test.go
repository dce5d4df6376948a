package errclass

import (
	"bytes"
	"context"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"maunium.net/go/mautrix/crypto/canonicaljson"
)

const marker = "PATIENT-DUPONT-4242"

type pgLike struct{ msg string }

func (e *pgLike) Error() string    { return e.msg }
func (e *pgLike) SQLState() string { return "22021" }

type classed struct{}

func (classed) Error() string      { return "x " + marker }
func (classed) ErrorClass() string { return "classed" }

var errSentinel = errors.New("fixed sentinel text")

func TestOf(t *testing.T) {
	Register(errSentinel)
	var syntax *json.SyntaxError
	if err := json.Unmarshal([]byte(`{"`+marker+`": x}`), &struct{}{}); !errors.As(err, &syntax) {
		t.Fatalf("want a syntax error, got %v", err)
	}
	typeErr := json.Unmarshal([]byte(`{"a":{"`+marker+`":12345}}`), &struct{ A map[string]string }{})
	v2Err := jsonv2.Unmarshal([]byte(`{"X":"`+marker+`"}`), &struct{ X int }{})
	var v2Map map[string]int
	v2Err2 := jsonv2.Unmarshal([]byte(`{"`+marker+`":"`+marker+`"}`), &v2Map)
	_, canonErr := canonicaljson.Marshal(json.RawMessage(`{"` + marker + `":1.5}`))
	cases := []struct {
		name string
		err  error
		want string // a part the class must contain
	}{
		{"sentinel", fmt.Errorf("store %s: %w", marker, errSentinel), "fixed sentinel text"},
		{"context", fmt.Errorf("batch %s: %w", marker, context.DeadlineExceeded), "context deadline exceeded"},
		{"postgres", fmt.Errorf("insert: %w", &pgLike{msg: "invalid byte sequence " + marker}), "SQLSTATE 22021"},
		{"json syntax", fmt.Errorf("decode: %w", syntax), "json: syntax error at byte"},
		{"json type", typeErr, "json: cannot decode a JSON number into string"},
		{"json v2", v2Err, "json"},
		{"json v2 map", v2Err2, "json"},
		{"canonical JSON", fmt.Errorf("sign event: %w", canonErr), "unclassified"},
		{"classer", fmt.Errorf("wrap %s: %w", marker, classed{}), "classed"},
		{"joined", errors.Join(errors.New(marker), context.Canceled), "context canceled"},
		{"network", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New(marker)}, "network: dial tcp"},
		{"file", &fs.PathError{Op: "open", Path: "/data/" + marker, Err: syscall.ENOENT}, "file: open: no such file or directory"},
		{"unknown", errors.New(marker), "unclassified error (*errors.errorString)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("no error to classify")
			}
			got := Of(c.err)
			t.Logf("%s", got)
			if strings.Contains(got, marker) || strings.Contains(got, "PATIENT") {
				t.Fatalf("class %q carries the content", got)
			}
			if !strings.Contains(got, c.want) {
				t.Fatalf("class %q, want it to contain %q", got, c.want)
			}
		})
	}
	if Of(nil) != "" {
		t.Fatal("nil error has a class")
	}
}

func TestAttr(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Error("failed", Attr(fmt.Errorf("%s: %w", marker, context.Canceled)))
	if strings.Contains(buf.String(), marker) || !strings.Contains(buf.String(), `err="context canceled"`) {
		t.Fatalf("log line %q", buf.String())
	}
}
