package stateres

import (
	"fmt"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// iterativeAuthChecks applies events in order to state, keeping each one
// the authorisation rules allow against the state built so far. Where the
// state has no entry for a key the rules need, the event's own auth event
// for that key stands in, if it was not rejected. Rejected events are never
// admitted. The rules are mautrix's eventauth, given the selected events as
// precomputed auth events, which is how it checks against a state rather
// than against auth_events.
func (r *resolution) iterativeAuthChecks(state map[StateKey]int32, events []int32) error {
	for i, v := range events {
		if i%256 == 255 {
			if err := r.ctx.Err(); err != nil {
				return err
			}
		}
		nd := &r.g.nodes[v]
		if nd.ev.InternalMeta.Rejected {
			continue
		}
		selection := nd.ev.AuthEventSelection(r.version)
		authEvents := make([]*pdu.PDU, 0, len(selection))
		for _, k := range selection {
			if s, ok := state[k]; ok && !r.g.nodes[s].ev.InternalMeta.Rejected {
				authEvents = append(authEvents, r.g.nodes[s].ev)
				continue
			}
			if a := r.g.authOfKey(v, k); a >= 0 && !r.g.nodes[a].ev.InternalMeta.Rejected {
				authEvents = append(authEvents, r.g.nodes[a].ev)
			}
		}
		err := eventauth.Authorize(r.version, nd.ev, authEvents, r.getEvents, r.keyFunc)
		if r.internalErr != nil {
			return r.internalErr
		}
		if err == nil {
			state[nd.key] = v
		}
	}
	return nil
}

// getEvents serves eventauth's look-ups (the room version 12 create event,
// through the room ID) from the loaded graph. Everything it can ask for was
// loaded before the checks began.
func (r *resolution) getEvents(ids []id.EventID) ([]*pdu.PDU, error) {
	out := make([]*pdu.PDU, 0, len(ids))
	for _, e := range ids {
		if i, ok := r.g.index[e]; ok {
			out = append(out, r.g.nodes[i].ev)
		}
	}
	return out, nil
}

// keyFunc hands eventauth the caller's key source. When there is none, or
// it fails (as opposed to answering that it knows no such key), Resolve
// fails rather than refusing a valid event and computing a wrong state.
func (r *resolution) keyFunc(server string, keyID id.KeyID, minValid time.Time) (id.SigningKey, time.Time, error) {
	if r.getKey == nil {
		r.internalErr = fmt.Errorf("%w (server %s)", ErrNoKeySource, server)
		return "", time.Time{}, r.internalErr
	}
	key, until, err := r.getKey(server, keyID, minValid)
	if err != nil {
		r.internalErr = fmt.Errorf("stateres: signing key of %s: %w", server, err)
	}
	return key, until, err
}

func gjsonStrings(raw []byte, path string) []string {
	var out []string
	gjson.GetBytes(raw, path).ForEach(func(_, v gjson.Result) bool {
		if v.Type == gjson.String {
			out = append(out, v.Str)
		}
		return true
	})
	return out
}
