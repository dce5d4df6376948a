package rooms

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/eimis-hub/eimis/internal/canonjson"
	"github.com/eimis-hub/eimis/internal/errclass"
	"github.com/eimis-hub/eimis/internal/store"
)

func init() {
	errclass.Register(ErrForbidden, ErrTooLarge, ErrUnknownRoom, ErrUnknownEvent, ErrBadEvent,
		ErrUnsupportedRoomVersion, ErrClosed, errPanicked)
}

// checkSubmit refuses, before it is queued to the writer, a request the
// writer could not sign or the store could not hold. Every door (the
// Client-Server API, appservices, bridges, and federation later) reaches
// the writer through Send or CreateRoom, so this is the last line of
// defence whatever a door forgot: a request it lets through would only
// fail alone, but in the writer's goroutine rather than the caller's.
func checkSubmit(req Submit) error {
	if !storable(string(req.RoomID)) {
		return fail(ErrUnknownRoom, "room ID is not valid UTF-8")
	}
	if !storable(req.Type) {
		return fail(ErrBadEvent, "event type must be valid UTF-8 without NUL")
	}
	if req.StateKey != nil && !storable(*req.StateKey) {
		return fail(ErrBadEvent, "state key must be valid UTF-8 without NUL")
	}
	if !storable(string(req.Redacts)) {
		return fail(ErrUnknownEvent, "the event to redact is not in this room")
	}
	if !storable(string(req.Door.Kind)) || !storable(req.Door.ID) {
		return fail(ErrBadEvent, "the request's device or door ID must be valid UTF-8 without NUL")
	}
	if req.Txn != nil && !storableTxn(*req.Txn) {
		return fail(ErrBadEvent, "transaction ID must be valid UTF-8 without NUL")
	}
	return checkContent(req.Content)
}

// checkContent applies canonical JSON's rules to event content (empty
// content is {}). The error names the class and position of the fault,
// never its text; a *canonjson.Error is in its chain.
func checkContent(content []byte) error {
	if len(bytes.TrimSpace(content)) == 0 {
		return nil
	}
	if err := canonjson.Validate(content); err != nil {
		return opError{fmt.Errorf("%w: content is not canonical JSON: %w", ErrBadEvent, err)}
	}
	return nil
}

// storable reports whether s can be a key or text column in either store:
// PostgreSQL's TEXT refuses invalid UTF-8 and NUL.
func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func storableTxn(k store.TxnKey) bool {
	return storable(k.UserID) && storable(k.DeviceID) && storable(k.Scope) && storable(k.TxnID)
}
