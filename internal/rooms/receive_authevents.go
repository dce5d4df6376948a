package rooms

import (
	"fmt"

	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

// checkAuthEvents is step 3: the event is authorised by the auth events it
// names. They must all be stored (else ErrMissingAuth: fetch them first);
// false means the event is rejected, as it is when one of them was.
func (b *batch) checkAuthEvents(roomID string, in *inbound) (bool, error) {
	evs, err := b.tx.EventsByIDAny(b.ctx, eventIDs(in.pdu.AuthEvents))
	if err != nil {
		return false, err
	}
	if len(evs) != len(in.pdu.AuthEvents) {
		return false, opError{fmt.Errorf("%w: %d of %d known", ErrMissingAuth, len(evs), len(in.pdu.AuthEvents))}
	}
	auth := make([]*pdu.PDU, 0, len(evs))
	for _, e := range evs {
		if e.Flags&store.FlagRejected != 0 || e.RoomID != roomID {
			return false, nil
		}
		p, err := ParsePDU(e.JSON)
		if err != nil {
			return false, fmt.Errorf("auth event %s: %w", e.EventID, err)
		}
		p.InternalMeta.EventID = id.EventID(e.EventID)
		auth = append(auth, p)
	}
	if err := eventauth.Authorize(in.version, in.pdu, auth, b.authEvents, b.s.getKey); err != nil {
		return false, nil
	}
	return true, nil
}
