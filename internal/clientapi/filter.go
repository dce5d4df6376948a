package clientapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/identity"
)

// maxFilterBytes bounds a filter: the spec's filters are lists of room
// IDs, user IDs and event types; a few KiB is a large one.
const maxFilterBytes = 64 << 10

// The spec's Filter schema, typed. Decoding a filter into it checks the
// type of every field the spec defines; fields it does not define are
// allowed (extensions) and ignored.
type filterJSON struct {
	AccountData *eventFilterJSON `json:"account_data"`
	EventFields []string         `json:"event_fields"`
	EventFormat *string          `json:"event_format"`
	Presence    *eventFilterJSON `json:"presence"`
	Room        *roomFilterJSON  `json:"room"`
}

type roomFilterJSON struct {
	AccountData  *roomEventFilterJSON `json:"account_data"`
	Ephemeral    *roomEventFilterJSON `json:"ephemeral"`
	IncludeLeave *bool                `json:"include_leave"`
	NotRooms     []string             `json:"not_rooms"`
	Rooms        []string             `json:"rooms"`
	State        *roomEventFilterJSON `json:"state"`
	Timeline     *roomEventFilterJSON `json:"timeline"`
}

type eventFilterJSON struct {
	// Limit is kept raw: a quoted "10" or 10.5 would pass a Go number.
	Limit      json.RawMessage `json:"limit"`
	NotSenders []string        `json:"not_senders"`
	NotTypes   []string        `json:"not_types"`
	Senders    []string        `json:"senders"`
	Types      []string        `json:"types"`
}

type roomEventFilterJSON struct {
	eventFilterJSON
	ContainsURL               *bool    `json:"contains_url"`
	IncludeRedundantMembers   *bool    `json:"include_redundant_members"`
	LazyLoadMembers           *bool    `json:"lazy_load_members"`
	NotRooms                  []string `json:"not_rooms"`
	Rooms                     []string `json:"rooms"`
	UnreadThreadNotifications *bool    `json:"unread_thread_notifications"`
}

// syncFilter is what /sync takes from a filter.
type syncFilter struct {
	// TimelineLimit is room.timeline.limit, 0 when unset.
	TimelineLimit int
}

// parseFilter validates a filter against the spec's schema: a JSON
// object, every known field of its type, limits non-negative integers,
// event_format "client" or "federation". Text that is not JSON is
// M_NOT_JSON, anything else wrong M_BAD_JSON, too large M_TOO_LARGE.
func parseFilter(raw []byte) (syncFilter, *mautrix.RespError) {
	fail := func(e mautrix.RespError) (syncFilter, *mautrix.RespError) { return syncFilter{}, &e }
	if len(raw) > maxFilterBytes {
		return fail(mautrix.MTooLarge.WithMessage("Filter larger than %d bytes", maxFilterBytes))
	}
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) {
		return fail(mautrix.MNotJSON.WithMessage("Filter is not JSON"))
	}
	if len(raw) == 0 || raw[0] != '{' {
		return fail(mautrix.MBadJSON.WithMessage("Filter must be a JSON object"))
	}
	var f filterJSON
	if err := json.Unmarshal(raw, &f); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fail(mautrix.MBadJSON.WithMessage("Invalid filter: %s must be %s", te.Field, describeGoType(te.Type.String())))
		}
		return fail(mautrix.MBadJSON.WithMessage("Invalid filter"))
	}
	if f.EventFormat != nil && *f.EventFormat != "client" && *f.EventFormat != "federation" {
		return fail(mautrix.MBadJSON.WithMessage("Invalid filter: event_format must be client or federation"))
	}
	var out syncFilter
	limits := map[string]json.RawMessage{}
	if f.AccountData != nil {
		limits["account_data.limit"] = f.AccountData.Limit
	}
	if f.Presence != nil {
		limits["presence.limit"] = f.Presence.Limit
	}
	if rf := f.Room; rf != nil {
		for name, ef := range map[string]*roomEventFilterJSON{
			"account_data": rf.AccountData, "ephemeral": rf.Ephemeral, "state": rf.State, "timeline": rf.Timeline,
		} {
			if ef != nil {
				limits["room."+name+".limit"] = ef.Limit
			}
		}
	}
	for field, l := range limits {
		n, ok := filterLimit(l)
		if !ok {
			return fail(mautrix.MBadJSON.WithMessage("Invalid filter: %s must be a non-negative integer", field))
		}
		if field == "room.timeline.limit" {
			out.TimelineLimit = n
		}
	}
	return out, nil
}

// filterLimit reads a limit: absent or null is 0; otherwise an integer
// from 0 to 2^53-1 written as one (no quotes, fraction or exponent).
func filterLimit(raw json.RawMessage) (int, bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || s == "null" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<53-1 {
		return 0, false
	}
	return int(min(n, 1<<31-1)), true
}

func describeGoType(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list of strings"
	case t == "bool", t == "*bool":
		return "true or false"
	case t == "string", t == "*string":
		return "a string"
	}
	return "an object"
}

// timelineLimit reads room.timeline.limit from an inline or stored filter.
// An inline filter is checked like a new one (the client sees its mistake
// at once). A stored filter that does not parse (stored before filters
// were checked) is ignored rather than failing every /sync that names it.
func (a *API) timelineLimit(r *http.Request, s identity.Session, f string) (int, *mautrix.RespError) {
	if strings.HasPrefix(strings.TrimSpace(f), "{") {
		sf, e := parseFilter([]byte(f))
		if e != nil {
			return 0, e
		}
		return min(sf.TimelineLimit, 1000), nil
	}
	key := [2]string{string(s.UserID), f}
	a.filterMu.Lock()
	limit, ok := a.filters[key]
	a.filterMu.Unlock()
	if ok {
		return limit, nil
	}
	stored, err := a.st.GetFilter(r.Context(), string(s.UserID), f)
	if err != nil {
		e := mautrix.MInvalidParam.WithMessage("Unknown filter %q", f)
		return 0, &e
	}
	sf, e := parseFilter(stored)
	if e != nil {
		a.log.Warn("stored filter is invalid; syncing without it", "user", s.UserID, "filter_id", f, "errcode", e.ErrCode)
	}
	limit = min(sf.TimelineLimit, 1000)
	a.filterMu.Lock()
	if len(a.filters) >= 100_000 {
		clear(a.filters) // bounded; entries are cheap to reload
	}
	a.filters[key] = limit
	a.filterMu.Unlock()
	return limit, nil
}
