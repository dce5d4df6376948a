package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

// The inbound pipeline for events built by other servers, one step per
// file, in the order the Server-Server API gives:
//
//  1. format and room version      (receive_format.go, caller's goroutine)
//  2. signatures and hashes        (receive_signatures.go, caller's goroutine)
//  3. auth against its auth events (receive_authevents.go, in the writer)
//  4. auth against the state before it, from its prev_events' resolved
//     states; 5. soft-fail against current state; 6. store; 7. update
//     the forward extremities and current state (placeEvent, dag.go)
//  8. notify: the writer's commit hands accepted events to the Publisher.
//
// Local sends go through the same rules without steps 1-3: the writer
// builds them from current state, so they are authorised against it and
// extend every extremity.

// Inbound errors: the event is dropped (nothing stored).
var (
	// ErrBadPDU is an event that fails the format checks.
	ErrBadPDU = errors.New("rooms: malformed PDU")
	// ErrBadSignature is an event whose sender's server signature does not
	// verify (or whose key is unknown).
	ErrBadSignature = errors.New("rooms: bad signature")
	// ErrMissingAuth is an event whose auth_events are not all stored: the
	// caller must fetch them (they would be stored as outliers) first.
	ErrMissingAuth = errors.New("rooms: auth_events unknown")
)

// Outcome is what the pipeline did with an event it kept.
type Outcome int

const (
	// Accepted: in the DAG, served to clients, a forward extremity.
	Accepted Outcome = iota
	// SoftFailed: stored, not served, not an extremity.
	SoftFailed
	// Rejected: stored only so it is not fetched again; never served or
	// referenced.
	Rejected
	// Duplicate: the event was already stored; nothing changed.
	Duplicate
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case SoftFailed:
		return "soft_failed"
	case Rejected:
		return "rejected"
	case Duplicate:
		return "duplicate"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Received is the pipeline's answer for one event.
type Received struct {
	EventID id.EventID
	Outcome Outcome
	// Pos is the event's position (negative when it is not live); 0 for
	// a duplicate.
	Pos int64
}

// Receive runs one remote event through the inbound pipeline. An error
// means the event was dropped; otherwise the outcome says how it was kept.
func (s *Server) Receive(ctx context.Context, raw json.RawMessage) (*Received, error) {
	return s.receive(ctx, raw, placeOpts{})
}

// ReceiveWithPrevStates is Receive for an event whose prev_events are not
// all in the DAG (ErrMissingPrev) and could not be fetched: prevStates is
// the state after each missing prev_event, as a peer's state_ids gave it
// (the state before it plus itself, if a state event). Every event it
// names must already be stored (StoreOutliers).
func (s *Server) ReceiveWithPrevStates(ctx context.Context, raw json.RawMessage, prevStates map[id.EventID]store.StateMap) (*Received, error) {
	return s.receive(ctx, raw, placeOpts{prevStates: prevStates})
}

func (s *Server) receive(ctx context.Context, raw json.RawMessage, opt placeOpts) (*Received, error) {
	in, err := s.checkFormat(ctx, raw) // 1
	if err != nil {
		return nil, err
	}
	return s.receiveChecked(ctx, in, opt)
}

func (s *Server) receiveChecked(ctx context.Context, in *inbound, opt placeOpts) (*Received, error) {
	if err := s.checkSignatures(in); err != nil { // 2
		return nil, err
	}
	var out Received
	_, err := s.submit(ctx, func(b *batch) (*Result, error) {
		known, err := b.tx.EventsByIDAny(b.ctx, []string{string(in.id)})
		if err != nil {
			return nil, err
		}
		opt := opt
		if len(known) > 0 && known[0].Flags == store.FlagOutlier {
			// Fetched before as an outlier (an auth or state event, a
			// missing prev_event's neighbour): it now takes its place.
			opt.promote = true
		} else if len(known) > 0 {
			out = Received{EventID: in.id, Outcome: Duplicate}
			return &Result{EventID: in.id, RoomID: in.room}, nil
		}
		rs, err := b.room(string(in.room))
		if err != nil {
			return nil, err
		}
		raw, err := marshalPDU(in.pdu)
		if err != nil {
			return nil, opError{fmt.Errorf("%w: %w", ErrBadPDU, err)}
		}
		ok, err := b.checkAuthEvents(string(rs.roomID), in) // 3
		if err != nil {
			return nil, err
		}
		if !ok {
			ev := storedEvent(in, raw)
			ev.Flags = store.FlagRejected
			pos, err := b.storeEvent(store.NewEvent{Event: ev}, opt)
			if err != nil {
				return nil, err
			}
			out = Received{EventID: in.id, Outcome: Rejected, Pos: pos}
			return &Result{EventID: in.id, RoomID: in.room}, nil
		}
		pl, err := b.placeEvent(rs, in.pdu, in.id, raw, opt) // 4-7
		if err != nil {
			return nil, err
		}
		out = Received{EventID: in.id, Outcome: outcomeOf(pl.Flags), Pos: pl.Pos}
		return &Result{EventID: in.id, RoomID: in.room}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func outcomeOf(f store.EventFlags) Outcome {
	switch {
	case f&store.FlagRejected != 0:
		return Rejected
	case f&store.FlagSoftFailed != 0:
		return SoftFailed
	}
	return Accepted
}

// storedEvent is the store row of an inbound event.
func storedEvent(in *inbound, raw []byte) store.Event {
	p := in.pdu
	return store.Event{
		EventID: string(in.id), RoomID: string(in.room), Type: p.Type, StateKey: p.StateKey,
		Sender: string(p.Sender), Depth: p.Depth, OriginTS: p.OriginServerTS, JSON: raw,
		Membership: membershipOf(p), Door: inboundDoor,
	}
}

// inboundDoor is the door recorded on events from other servers.
const inboundDoor = "federation"
