package inbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/internal/canonjson"
	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// Transaction is an inbound PUT /send body.
type Transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []json.RawMessage `json:"edus"`
}

// Errors of DecodeTransaction.
var (
	ErrTxnMalformed = errors.New("inbound: malformed transaction")
	ErrTxnTooLarge  = errors.New("inbound: transaction over the limits")
)

// DecodeTransaction parses and bounds a transaction body: well-formed
// JSON, at most MaxTxnBytes, MaxTxnPDUs PDUs and MaxTxnEDUs EDUs, each PDU
// and EDU a JSON object. It never panics on any input (fuzzed).
func DecodeTransaction(body []byte) (*Transaction, error) {
	if len(body) > MaxTxnBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrTxnTooLarge, len(body))
	}
	if err := canonjson.WellFormed(body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTxnMalformed, err)
	}
	var t Transaction
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTxnMalformed, err)
	}
	if t.Origin == "" {
		return nil, fmt.Errorf("%w: no origin", ErrTxnMalformed)
	}
	if len(t.PDUs) > MaxTxnPDUs || len(t.EDUs) > MaxTxnEDUs {
		return nil, fmt.Errorf("%w: %d PDUs, %d EDUs", ErrTxnTooLarge, len(t.PDUs), len(t.EDUs))
	}
	for _, raw := range append(append([]json.RawMessage{}, t.PDUs...), t.EDUs...) {
		if b := bytes.TrimSpace(raw); len(b) == 0 || b[0] != '{' {
			return nil, fmt.Errorf("%w: a PDU or EDU is not an object", ErrTxnMalformed)
		}
	}
	return &t, nil
}

// handleSend is PUT /_matrix/federation/v1/send/{txnID}.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	origin := fedctx.Origin(ctx)
	if origin == "" {
		s.count("txn_unauthenticated")
		writeErr(w, mautrix.MForbidden.WithStatus(http.StatusUnauthorized).WithMessage("The request is not signed"))
		return
	}
	txnID := r.PathValue("txnID")
	if txnID == "" || len(txnID) > 255 {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Bad transaction ID"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxTxnBytes))
	if err != nil {
		s.count("txn_too_large")
		writeErr(w, mautrix.MTooLarge.WithStatus(http.StatusRequestEntityTooLarge).WithMessage("The transaction is over %d bytes", MaxTxnBytes))
		return
	}
	txn, err := DecodeTransaction(body)
	switch {
	case errors.Is(err, ErrTxnTooLarge):
		s.count("txn_too_large")
		writeErr(w, mautrix.MTooLarge.WithStatus(http.StatusRequestEntityTooLarge).WithMessage("At most %d PDUs and %d EDUs a transaction", MaxTxnPDUs, MaxTxnEDUs))
		return
	case err != nil:
		s.count("txn_malformed")
		writeErr(w, mautrix.MNotJSON.WithMessage("Malformed transaction"))
		return
	}
	if txn.Origin != origin {
		s.count("txn_wrong_origin")
		writeErr(w, mautrix.MForbidden.WithMessage("The transaction's origin is not the signing server"))
		return
	}
	mu := s.originLock(origin)
	mu.Lock()
	defer mu.Unlock()
	if prev, err := s.cfg.Store.FederationTxn(ctx, origin, txnID); err == nil {
		s.count("txn_replayed")
		writeRaw(w, http.StatusOK, prev)
		return
	} else if !errors.Is(err, store.ErrNotFound) {
		internal(s.log, w, err)
		return
	}
	resp := s.ProcessTransaction(ctx, origin, txn)
	raw, err := json.Marshal(resp)
	if err != nil {
		internal(s.log, w, err)
		return
	}
	if err := s.cfg.Store.PutFederationTxn(ctx, origin, txnID, raw); err != nil && !errors.Is(err, store.ErrExists) {
		// The events are stored; a retry would find them duplicates.
		s.log.Warn("federation transaction not recorded", "origin", origin, "err", err)
	}
	s.count("txn_processed")
	writeRaw(w, http.StatusOK, raw)
}

// ProcessTransaction handles every PDU and EDU of txn from origin; one bad
// PDU or EDU never fails the others.
func (s *Server) ProcessTransaction(ctx context.Context, origin string, txn *Transaction) *federation.RespSendTransaction {
	resp := &federation.RespSendTransaction{PDUs: map[id.EventID]federation.PDUProcessingResult{}}
	for i, raw := range txn.PDUs {
		evID, err := s.receivePDU(ctx, origin, raw)
		if evID == "" {
			// Without an event ID there is nothing to key the answer by.
			evID = id.EventID(fmt.Sprintf("$invalid-%d", i))
		}
		if err != nil {
			resp.PDUs[evID] = federation.PDUProcessingResult{Error: err.Error()}
		} else {
			resp.PDUs[evID] = federation.PDUProcessingResult{}
		}
	}
	for _, raw := range txn.EDUs {
		s.receiveEDU(ctx, origin, raw)
	}
	return resp
}

// receivePDU runs one PDU from origin through the checks this package
// owns (origin, allow-list, room version) and the room server's pipeline,
// fetching what it lacks from origin.
func (s *Server) receivePDU(ctx context.Context, origin string, raw json.RawMessage) (id.EventID, error) {
	roomID := gjson.GetBytes(raw, "room_id").Str
	sender := id.UserID(gjson.GetBytes(raw, "sender").Str)
	if roomID == "" || sender == "" {
		s.count("pdu_malformed")
		return "", errors.New("malformed PDU")
	}
	room, err := s.cfg.Store.GetRoom(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		s.count("pdu_unknown_room")
		return "", errors.New("unknown room")
	} else if err != nil {
		return "", errors.New("internal error")
	}
	version := id.RoomVersion(room.Version)
	if !rooms.IsSupported(version) {
		s.count("pdu_unknown_version")
		return "", errors.New("unsupported room version")
	}
	evID, _, err := s.cfg.Rooms.CheckRemote(raw, version)
	if err != nil {
		s.count("pdu_dropped")
		return evID, refusalText(err)
	}
	if sender.Homeserver() != origin {
		s.count("pdu_wrong_origin")
		return evID, errors.New("the sender's server is not the transaction's origin")
	}
	if err := s.cfg.Servers.ServerAllowed(origin); err != nil {
		s.count("pdu_server_refused")
		return evID, errors.New("the sender's server is not in the trust space")
	}
	if !s.serverInRoom(ctx, roomID, s.name) {
		s.count("pdu_not_in_room")
		return evID, errors.New("this server is not in the room")
	}
	got, err := s.receiveFetching(ctx, origin, id.RoomID(roomID), version, evID, raw, true)
	if err != nil {
		s.count("pdu_dropped")
		return evID, refusalText(err)
	}
	s.count("pdu_" + got.Outcome.String())
	if got.Outcome == rooms.Rejected {
		return evID, errors.New("rejected by the auth rules")
	}
	return evID, nil
}

// refusalText is the error a peer sees: the pipeline's reason, never
// internal details.
func refusalText(err error) error {
	for _, e := range []error{rooms.ErrBadPDU, rooms.ErrBadSignature, rooms.ErrMissingAuth, rooms.ErrMissingPrev,
		rooms.ErrUnknownRoom, rooms.ErrUnsupportedRoomVersion, rooms.ErrForbidden} {
		if errors.Is(err, e) {
			return e
		}
	}
	return errors.New("internal error")
}

// receiveFetching is Receive with the fetching the spec asks for: unknown
// auth events are fetched (event_auth) and stored as outliers; unknown
// prev_events with get_missing_events (bounded), and, when the gap still
// remains and deep is set, the state at each missing prev_event with
// state_ids, its events fetched and stored as outliers.
func (s *Server) receiveFetching(ctx context.Context, origin string, roomID id.RoomID, version id.RoomVersion, evID id.EventID, raw json.RawMessage, deep bool) (*rooms.Received, error) {
	got, err := s.cfg.Rooms.Receive(ctx, raw)
	if errors.Is(err, rooms.ErrMissingAuth) && s.cfg.Client != nil {
		if ferr := s.fetchAuthChain(ctx, origin, roomID, version, evID); ferr != nil {
			return nil, fmt.Errorf("%w (fetching: %w)", err, ferr)
		}
		got, err = s.cfg.Rooms.Receive(ctx, raw)
	}
	if !errors.Is(err, rooms.ErrMissingPrev) || s.cfg.Client == nil || !deep {
		return got, err
	}
	s.count("pdu_missing_prev")
	s.fetchMissing(ctx, origin, roomID, version, evID, raw)
	got, err = s.cfg.Rooms.Receive(ctx, raw)
	if !errors.Is(err, rooms.ErrMissingPrev) {
		return got, err
	}
	prevStates, ferr := s.fetchPrevStates(ctx, origin, roomID, version, raw)
	if ferr != nil {
		return nil, fmt.Errorf("%w (fetching state: %w)", err, ferr)
	}
	return s.cfg.Rooms.ReceiveWithPrevStates(ctx, raw, prevStates)
}

func (s *Server) fetchAuthChain(ctx context.Context, origin string, roomID id.RoomID, version id.RoomVersion, evID id.EventID) error {
	resp, err := s.cfg.Client.GetEventAuthChain(ctx, origin, roomID, evID)
	if err != nil {
		return err
	}
	if len(resp.AuthChain) > maxStateFetch {
		return fmt.Errorf("auth chain of %d events is over the limit", len(resp.AuthChain))
	}
	_, err = s.cfg.Rooms.StoreOutliers(ctx, roomID, version, resp.AuthChain)
	return err
}

// fetchMissing asks origin for the events between this room's forward
// extremities and evID, and receives them oldest first (their own gaps are
// not chased further: the bound is one get_missing_events per PDU).
func (s *Server) fetchMissing(ctx context.Context, origin string, roomID id.RoomID, version id.RoomVersion, evID id.EventID, raw json.RawMessage) {
	xs, err := s.cfg.Store.Extremities(ctx, string(roomID))
	if err != nil {
		return
	}
	earliest := make([]id.EventID, 0, len(xs))
	minDepth := int64(0)
	for _, x := range xs {
		earliest = append(earliest, id.EventID(x.EventID))
		if minDepth == 0 || x.Depth < minDepth {
			minDepth = x.Depth
		}
	}
	resp, err := s.cfg.Client.GetMissingEvents(ctx, &federation.ReqGetMissingEvents{
		ServerName: origin, RoomID: roomID, EarliestEvents: earliest, LatestEvents: []id.EventID{evID},
		Limit: MaxMissingEvents / 2, MinDepth: int(minDepth),
	})
	if err != nil {
		s.log.Info("get_missing_events failed", "origin", origin, "room", roomID, "err", err)
		return
	}
	evs := resp.Events
	if len(evs) > MaxMissingEvents {
		evs = evs[:MaxMissingEvents]
	}
	sort.SliceStable(evs, func(i, j int) bool {
		return gjson.GetBytes(evs[i], "depth").Int() < gjson.GetBytes(evs[j], "depth").Int()
	})
	for _, e := range evs {
		if gjson.GetBytes(e, "room_id").Str != string(roomID) {
			continue
		}
		sender := id.UserID(gjson.GetBytes(e, "sender").Str)
		if s.cfg.Servers.ServerAllowed(sender.Homeserver()) != nil {
			s.count("pdu_server_refused")
			continue
		}
		eid, _, err := s.cfg.Rooms.CheckRemote(e, version)
		if err != nil {
			s.count("pdu_dropped")
			continue
		}
		if _, err := s.receiveFetching(ctx, origin, roomID, version, eid, e, false); err != nil {
			s.log.Debug("missing event not placed", "event", eid, "err", err)
		}
	}
}

// fetchPrevStates fetches the state after each of the PDU's prev_events
// that the room server lacks: the state before it (state_ids) and the
// event itself, all stored as outliers first.
func (s *Server) fetchPrevStates(ctx context.Context, origin string, roomID id.RoomID, version id.RoomVersion, raw json.RawMessage) (map[id.EventID]store.StateMap, error) {
	var prevs []id.EventID
	for _, p := range gjson.GetBytes(raw, "prev_events").Array() {
		prevs = append(prevs, id.EventID(p.Str))
	}
	known, err := s.cfg.Store.EventsByIDAny(ctx, toStrings(prevs))
	if err != nil {
		return nil, err
	}
	inDAG := map[id.EventID]bool{}
	for _, e := range known {
		if e.Flags == 0 && e.StateAfter != 0 {
			inDAG[id.EventID(e.EventID)] = true
		}
	}
	out := map[id.EventID]store.StateMap{}
	for _, prev := range prevs {
		if inDAG[prev] {
			continue
		}
		ids, err := s.cfg.Client.GetStateIDs(ctx, origin, roomID, prev)
		if err != nil {
			return nil, err
		}
		if len(ids.PDUs)+len(ids.AuthChain) > maxStateFetch {
			return nil, fmt.Errorf("state of %d events is over the limit", len(ids.PDUs)+len(ids.AuthChain))
		}
		want := append(append(append([]id.EventID{}, ids.AuthChain...), ids.PDUs...), prev)
		if err := s.fetchEvents(ctx, origin, roomID, version, want); err != nil {
			return nil, err
		}
		evs, err := s.cfg.Store.EventsByIDAny(ctx, toStrings(append(ids.PDUs, prev)))
		if err != nil {
			return nil, err
		}
		st := store.StateMap{}
		var prevEv *store.Event
		for i, e := range evs {
			if e.EventID == string(prev) {
				prevEv = &evs[i]
				continue
			}
			if e.StateKey != nil && e.Flags&store.FlagRejected == 0 && e.RoomID == string(roomID) {
				st[store.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e.EventID
			}
		}
		if prevEv == nil {
			return nil, fmt.Errorf("prev event %s could not be fetched", prev)
		}
		if prevEv.StateKey != nil && prevEv.Flags&store.FlagRejected == 0 {
			st[store.StateKey{Type: prevEv.Type, StateKey: *prevEv.StateKey}] = prevEv.EventID
		}
		out[prev] = st
	}
	return out, nil
}

// fetchEvents fetches the events among ids that are not stored, one by
// one from origin, and stores them as outliers.
func (s *Server) fetchEvents(ctx context.Context, origin string, roomID id.RoomID, version id.RoomVersion, ids []id.EventID) error {
	have, err := s.cfg.Store.EventsByIDAny(ctx, toStrings(ids))
	if err != nil {
		return err
	}
	got := map[string]bool{}
	for _, e := range have {
		got[e.EventID] = true
	}
	var raws []json.RawMessage
	for _, want := range ids {
		if got[string(want)] {
			continue
		}
		got[string(want)] = true
		resp, err := s.cfg.Client.GetEvent(ctx, origin, want)
		if err != nil {
			return fmt.Errorf("event %s: %w", want, err)
		}
		if len(resp.PDUs) != 1 {
			return fmt.Errorf("event %s: %d PDUs in the answer", want, len(resp.PDUs))
		}
		raws = append(raws, resp.PDUs[0])
	}
	if len(raws) == 0 {
		return nil
	}
	res, err := s.cfg.Rooms.StoreOutliers(ctx, roomID, version, raws)
	if err != nil {
		return err
	}
	s.countOutliers(res)
	return nil
}

func (s *Server) countOutliers(res *rooms.OutlierResult) {
	for range res.Dropped {
		s.count("outlier_dropped")
	}
	for _, o := range res.Outcome {
		s.count("outlier_" + o.String())
	}
}

func toStrings(ids []id.EventID) []string {
	out := make([]string, len(ids))
	for i, v := range ids {
		out[i] = string(v)
	}
	return out
}
