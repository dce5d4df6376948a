// Package transport is the federation's HTTP plumbing: X-Matrix
// authentication of every inbound request (origin signature, destination,
// origin on the federation list), the HTTPS listener that mounts the
// federation packages' routes (fedctx.Route), and the outbound client
// that signs every request and never dials a server outside the list.
package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/internal/codes"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/operators"
)

// ActionRequest is the audit action of a refused federation request.
const ActionRequest = "federation.request"

// DefaultMaxBodyBytes bounds an authenticated request's body. A
// transaction holds at most 50 PDUs and 100 EDUs of 64 KiB each; a
// send_join's state is in the response, not the request.
const DefaultMaxBodyBytes = 16 << 20

// Allower is the federation list's decision on a server (trustlist).
type Allower interface {
	ServerAllowed(server string) error
}

// KeySource gives a server's key valid at a time (keys.Ring).
type KeySource interface {
	VerifyKey(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error)
}

// Authenticator checks X-Matrix authentication.
type Authenticator struct {
	ServerName string
	List       Allower
	Keys       KeySource
	// Refusals is the one refusal path (counted and audited, door
	// federation:<origin>).
	Refusals     door.Recorder
	MaxBodyBytes int64
	Log          *slog.Logger
}

// Wrap serves next only to authenticated requests from allowed origins,
// with the origin in the context (fedctx.Origin) and the door
// federation:<origin> (door.From). Everything else is refused with a
// stable code, counted and audited.
func (a *Authenticator) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin, body, code, err := a.authenticate(r)
		if code != "" {
			subject := origin
			if subject == "" {
				subject = "unknown origin"
			}
			ref := door.Refusal{Door: door.Of(door.Federation, origin), Code: code, Actor: origin, Action: ActionRequest,
				Target: r.Method + " " + r.URL.Path}
			if a.Refusals != nil {
				a.Refusals.Refused(r.Context(), ref)
			}
			a.log().Info("federation request refused", "origin", origin, "code", code, "path", r.URL.Path, "err", err)
			msg := subject
			if info, ok := codes.Lookup(code); ok {
				msg = strings.Replace(info.Message.EN, "%s", subject, 1)
			}
			codes.RespError(code, msg).Write(w)
			return
		}
		if err != nil {
			// Not a decision against the origin: its body was unreadable.
			var re mautrix.RespError
			if errors.As(err, &re) {
				re.Write(w)
				return
			}
			mautrix.MUnknown.WithMessage("reading request").Write(w)
			return
		}
		ctx := fedctx.WithOrigin(r.Context(), origin)
		ctx = door.With(ctx, door.Of(door.Federation, origin))
		r = r.WithContext(ctx)
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		next.ServeHTTP(w, r)
	})
}

func (a *Authenticator) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

var (
	errTooLarge = mautrix.MTooLarge.WithMessage("request body too large")
	errBadJSON  = mautrix.MNotJSON.WithMessage("request body is not JSON")
)

// authenticate returns the origin, the body read, and a refusal code (or
// "" with a nil error when the request is authenticated). The origin is
// checked against the list before any key is fetched, so an unlisted
// "origin" can never make the hub dial anywhere.
func (a *Authenticator) authenticate(r *http.Request) (origin string, body []byte, code string, err error) {
	header := r.Header.Get("Authorization")
	if !strings.HasPrefix(header, "X-Matrix ") {
		return "", nil, string(operators.CodeFedAuthMissing), errors.New("no X-Matrix authorization")
	}
	auth := federation.ParseXMatrixAuth(header)
	origin = auth.Origin
	if auth.Origin == "" || auth.KeyID == "" || auth.Signature == "" || auth.Destination == "" {
		return origin, nil, string(operators.CodeFedAuthMissing), errors.New("X-Matrix lacks origin, destination, key or sig")
	}
	if auth.Destination != a.ServerName {
		return origin, nil, string(operators.CodeFedWrongDestination), errors.New("destination " + auth.Destination)
	}
	if err := a.List.ServerAllowed(auth.Origin); err != nil {
		if ref, ok := operators.AsRefusal(err); ok {
			return origin, nil, string(ref.Code), err
		}
		return origin, nil, string(operators.CodeListUnavailable), err
	}
	max := a.MaxBodyBytes
	if max <= 0 {
		max = DefaultMaxBodyBytes
	}
	if r.ContentLength > max {
		return origin, nil, "", errTooLarge
	}
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		body, err = io.ReadAll(io.LimitReader(r.Body, max+1))
		if err != nil {
			return origin, nil, "", mautrix.MUnknown.WithMessage("reading request body")
		}
		if int64(len(body)) > max {
			return origin, nil, "", errTooLarge
		}
		if len(body) == 0 {
			body = nil
		} else if !json.Valid(body) {
			return origin, nil, "", errBadJSON
		}
	}
	key, _, err := a.Keys.VerifyKey(r.Context(), auth.Origin, auth.KeyID, time.Now())
	if err != nil {
		return origin, nil, string(operators.CodeFedBadSignature), err
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	signed := map[string]any{"method": r.Method, "uri": uri, "origin": auth.Origin, "destination": auth.Destination}
	if body != nil {
		signed["content"] = json.RawMessage(body)
	}
	msg, err := canonicaljson.Marshal(signed)
	if err != nil {
		return origin, nil, string(operators.CodeFedBadSignature), err
	}
	if err := signutil.VerifyJSONCanonical(key, auth.Signature, msg); err != nil {
		return origin, nil, string(operators.CodeFedBadSignature), err
	}
	return origin, body, "", nil
}
