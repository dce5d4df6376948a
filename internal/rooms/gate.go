package rooms

import (
	"encoding/json"
	"encoding/json/jsontext"
	"fmt"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Gate is the trust space's say in every event the room server builds,
// whichever door it came through (Client-Server API, bridges,
// appservices): the hub's policy engine implements it.
type Gate interface {
	// CheckUser refuses users who may not take part (the error is kept,
	// wrapped in ErrForbidden, so callers can read its code).
	CheckUser(u id.UserID) error
	// DisplayName is the name the hub imposes on a user, if any.
	DisplayName(u id.UserID) (string, bool)
}

// admit applies the gate to one event request and returns the content to
// build, with the imposed display name on member events.
//
// Leaving is always allowed: it is how the hub removes someone who lost
// their authorisation, and how anyone steps out. Everything else needs an
// authorised sender, and an invite also an authorised invitee, so nobody
// outside the trust space is ever pulled into a room.
func admit(g Gate, req Submit, content jsontext.Value) (jsontext.Value, error) {
	if g == nil {
		return content, nil
	}
	if req.Type != event.StateMember.Type || req.StateKey == nil {
		if err := g.CheckUser(req.Sender); err != nil {
			return nil, refused(err)
		}
		return content, nil
	}
	target := id.UserID(*req.StateKey)
	membership := gjson.GetBytes(content, "membership").Str
	if membership == "leave" && target == req.Sender {
		return content, nil
	}
	if err := g.CheckUser(req.Sender); err != nil {
		return nil, refused(err)
	}
	switch membership {
	case "invite":
		if err := g.CheckUser(target); err != nil {
			return nil, refused(err)
		}
	case "join", "knock":
	default:
		return content, nil
	}
	name, ok := g.DisplayName(target)
	if !ok || gjson.GetBytes(content, "displayname").Str == name {
		return content, nil
	}
	// A member event is where other clients read a user's name, so it is
	// where impersonation would happen: the directory's name wins.
	var m map[string]any
	if err := json.Unmarshal(content, &m); err != nil {
		return nil, fail(ErrBadEvent, "content must be a JSON object")
	}
	m["displayname"] = name
	out, err := json.Marshal(m)
	if err != nil {
		return nil, opError{fmt.Errorf("%w: member content: %w", ErrBadEvent, err)}
	}
	return jsontext.Value(out), nil
}

// refused fails one request (not its batch) with the gate's reason.
func refused(err error) error {
	return opError{fmt.Errorf("%w: %w", ErrForbidden, err)}
}
