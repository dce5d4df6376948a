// Package httpapi is the HTTP plumbing every API of the hub shares (the
// Client-Server API, the admin API, the media repository, the
// practitioners' bindings API, the appservice bindings, the bridge
// gateway's socket, and the federation API to come): request IDs, CORS,
// the body read deadline, body limits and JSON decoding, access-token
// extraction, and the answers to failed authentication and internal
// errors. Answers themselves are written by internal/httpjson.
//
// The middleware is composed once, in front of the whole router
// (internal/hub): WithBodyDeadline(WithRequestID(WithCORS(…))).
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/httpjson"
)

// Internal answers an internal error (500 M_UNKNOWN) and logs it with its
// class (internal/errclass), the method and the route pattern: never the
// error's text nor the URL, which can carry content. attrs add context
// that is no content either. A request whose client has gone (its
// context cancelled) is neither logged nor answered: nobody reads it.
func Internal(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error, attrs ...any) {
	if errors.Is(err, context.Canceled) {
		return
	}
	args := append([]any{errclass.Attr(err), "method", r.Method, "route", r.Pattern}, attrs...)
	log.Error("internal error", args...)
	httpjson.Error(w, mautrix.MUnknown.WithStatus(http.StatusInternalServerError).WithMessage("Internal server error"))
}

// AuthError is the Matrix error an authentication failure is answered
// with, and false when err is none (an internal error). An error without
// a status gets 401 for a missing or unknown token, 403 otherwise: an
// authentication failure is never a 500 that invites a retry.
func AuthError(err error) (mautrix.RespError, bool) {
	var re mautrix.RespError
	var rp *mautrix.RespError
	switch {
	case errors.As(err, &re):
	case errors.As(err, &rp) && rp != nil:
		re = *rp
	default:
		return mautrix.RespError{}, false
	}
	if re.StatusCode == 0 {
		re.StatusCode = http.StatusForbidden
		if re.ErrCode == mautrix.MMissingToken.ErrCode || re.ErrCode == mautrix.MUnknownToken.ErrCode {
			re.StatusCode = http.StatusUnauthorized
		}
	}
	return re, true
}

// Refuse answers a failed authentication: its Matrix error (AuthError),
// or an internal error for anything else.
func Refuse(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	if re, ok := AuthError(err); ok {
		httpjson.Error(w, re)
		return
	}
	Internal(log, w, r, err)
}
