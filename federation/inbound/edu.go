package inbound

import (
	"context"
	"encoding/json"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/store"
)

// EDU is one ephemeral data unit of a transaction.
type EDU struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// maxTypingTimeout bounds how long a remote user shows as typing.
const maxTypingTimeout = 30 * time.Second

// receiveEDU routes one EDU from origin. Every user it speaks for must be
// of origin's server, and every room it names one this server shares with
// origin; anything else is counted and dropped (EDUs get no answer).
func (s *Server) receiveEDU(ctx context.Context, origin string, raw json.RawMessage) {
	var e EDU
	if err := json.Unmarshal(raw, &e); err != nil {
		s.count("edu_malformed")
		return
	}
	ok := false
	switch e.Type {
	case "m.typing":
		ok = s.eduTyping(ctx, origin, e.Content)
	case "m.receipt":
		ok = s.eduReceipt(ctx, origin, e.Content)
	case "m.presence":
		ok = s.eduPresence(ctx, origin, e.Content)
	case "m.direct_to_device":
		ok = s.eduToDevice(ctx, origin, e.Content)
	case "m.device_list_update", "m.signing_key_update":
		ok = s.eduDeviceList(ctx, origin, e.Type, e.Content)
	default:
		s.count("edu_unknown")
		return
	}
	if ok {
		s.count("edu_" + e.Type)
	} else {
		s.count("edu_refused")
	}
}

func fromOrigin(u id.UserID, origin string) bool {
	_, hs, err := u.Parse()
	return err == nil && hs == origin
}

func (s *Server) eduTyping(ctx context.Context, origin string, content json.RawMessage) bool {
	var c struct {
		RoomID id.RoomID `json:"room_id"`
		UserID id.UserID `json:"user_id"`
		Typing bool      `json:"typing"`
	}
	if json.Unmarshal(content, &c) != nil || !fromOrigin(c.UserID, origin) || s.cfg.Typing == nil {
		return false
	}
	if !s.userInRoom(ctx, string(c.RoomID), string(c.UserID)) {
		return false
	}
	return s.cfg.Typing.SetTyping(string(c.RoomID), string(c.UserID), c.Typing, maxTypingTimeout) == nil
}

func (s *Server) eduReceipt(ctx context.Context, origin string, content json.RawMessage) bool {
	// room ID → receipt type → user ID → {event_ids, data{ts}}
	var c map[id.RoomID]map[string]map[id.UserID]struct {
		EventIDs []id.EventID `json:"event_ids"`
		Data     struct {
			TS int64 `json:"ts"`
		} `json:"data"`
	}
	if json.Unmarshal(content, &c) != nil || s.cfg.Receipts == nil {
		return false
	}
	ok := true
	for room, types := range c {
		for typ, users := range types {
			if typ != "m.read" {
				continue // private receipts never travel
			}
			for user, rc := range users {
				if !fromOrigin(user, origin) || len(rc.EventIDs) == 0 || !s.userInRoom(ctx, string(room), string(user)) {
					ok = false
					continue
				}
				if _, err := s.cfg.Receipts.PutReceipt(ctx, store.Receipt{RoomID: string(room), UserID: string(user), Type: typ,
					EventID: string(rc.EventIDs[0]), TS: rc.Data.TS}); err != nil {
					ok = false
					continue
				}
				if s.cfg.Waker != nil {
					s.cfg.Waker.Wake(string(room), "")
				}
			}
		}
	}
	return ok
}

func (s *Server) eduPresence(ctx context.Context, origin string, content json.RawMessage) bool {
	var c struct {
		Push []json.RawMessage `json:"push"`
	}
	if json.Unmarshal(content, &c) != nil || s.cfg.Presence == nil {
		return false
	}
	ok := true
	for _, p := range c.Push {
		var u struct {
			UserID id.UserID `json:"user_id"`
		}
		if json.Unmarshal(p, &u) != nil || !fromOrigin(u.UserID, origin) {
			ok = false
			continue
		}
		if s.cfg.Presence.RemotePresence(ctx, origin, u.UserID, p) != nil {
			ok = false
		}
	}
	return ok
}

func (s *Server) eduToDevice(ctx context.Context, origin string, content json.RawMessage) bool {
	var c struct {
		Sender    id.UserID                                     `json:"sender"`
		Type      string                                        `json:"type"`
		MessageID string                                        `json:"message_id"`
		Messages  map[id.UserID]map[id.DeviceID]json.RawMessage `json:"messages"`
	}
	if json.Unmarshal(content, &c) != nil || !fromOrigin(c.Sender, origin) || s.cfg.ToDevice == nil {
		return false
	}
	for u := range c.Messages {
		if _, hs, err := u.Parse(); err != nil || hs != s.name {
			return false
		}
	}
	return s.cfg.ToDevice.DeliverToDevice(ctx, origin, c.Sender, c.Type, c.MessageID, c.Messages) == nil
}

func (s *Server) eduDeviceList(ctx context.Context, origin, typ string, content json.RawMessage) bool {
	var c struct {
		UserID id.UserID `json:"user_id"`
	}
	if json.Unmarshal(content, &c) != nil || !fromOrigin(c.UserID, origin) || s.cfg.DeviceList == nil {
		return false
	}
	if typ == "m.device_list_update" {
		return s.cfg.DeviceList.DeviceListUpdate(ctx, origin, content) == nil
	}
	return s.cfg.DeviceList.SigningKeyUpdate(ctx, origin, content) == nil
}
