package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// The client side: a local user joins, leaves or invites across servers
// (the Client-Server API's /join, /leave and /invite call these).

// Errors of the client side.
var (
	// ErrLocal: the room is one this server is in (or the alias is its
	// own); the caller does the ordinary local membership change.
	ErrLocal = errors.New("inbound: the room is served locally")
	// ErrNoServer: no allowed server could be asked (or none answered).
	ErrNoServer = errors.New("inbound: no server of the trust space could do it")
	// ErrRefused: the trust space refuses the user or server.
	ErrRefused = errors.New("inbound: refused by the trust space")
	// ErrNotFound: the remote alias or room does not exist.
	ErrNotFound = errors.New("inbound: not found")
)

// JoinRoom joins user (local) to roomIDOrAlias, which another server
// hosts: make_join on the first allowed server that answers (the
// server_name hints, the alias's servers, the room ID's and the inviter's
// server), sign, send_join, then the room's state and auth chain are
// stored as outliers and the join placed on that state. ErrLocal when
// this server is in the room already.
func (s *Server) JoinRoom(ctx context.Context, user id.UserID, roomIDOrAlias string, serverNames []string) (id.RoomID, error) {
	var roomID id.RoomID
	candidates := append([]string{}, serverNames...)
	if strings.HasPrefix(roomIDOrAlias, "#") {
		alias := id.RoomAlias(roomIDOrAlias)
		hs := aliasServer(alias)
		if hs == "" || hs == s.name {
			return "", ErrLocal
		}
		if s.cfg.Client == nil || s.cfg.Servers.ServerAllowed(hs) != nil {
			return "", fmt.Errorf("%w: %s", ErrRefused, hs)
		}
		res, err := s.cfg.Client.QueryDirectory(ctx, hs, alias)
		if err != nil {
			return "", fmt.Errorf("%w: alias %s: %w", ErrNotFound, alias, err)
		}
		roomID = res.RoomID
		candidates = append(candidates, res.Servers...)
		candidates = append(candidates, hs)
	} else {
		roomID = id.RoomID(roomIDOrAlias)
	}
	if s.hasState(ctx, roomID) {
		return roomID, ErrLocal
	}
	if s.cfg.Client == nil {
		return "", ErrNoServer
	}
	if _, hs, ok := strings.Cut(string(roomID), ":"); ok {
		candidates = append(candidates, hs) // v12 room IDs have no server
	}
	if inv, err := s.cfg.Store.CurrentStateEvent(ctx, string(roomID), "m.room.member", string(user)); err == nil && inv.Membership == "invite" {
		candidates = append([]string{id.UserID(inv.Sender).Homeserver()}, candidates...)
	}
	var last error = ErrNoServer
	for _, via := range dedupe(candidates) {
		if via == s.name || via == "" || s.cfg.Servers.ServerAllowed(via) != nil {
			continue
		}
		err := s.joinVia(ctx, user, roomID, via)
		if err == nil {
			return roomID, nil
		}
		s.log.Info("remote join failed", "room", roomID, "via", via, "err", err)
		last = err
		if errors.Is(err, rooms.ErrForbidden) {
			break
		}
	}
	return "", last
}

func (s *Server) joinVia(ctx context.Context, user id.UserID, roomID id.RoomID, via string) error {
	mj, err := s.cfg.Client.MakeJoin(ctx, &federation.ReqMakeJoin{RoomID: roomID, UserID: user, Via: via, SupportedVersions: rooms.SupportedVersions})
	if err != nil {
		return fmt.Errorf("make_join: %w", err)
	}
	if !rooms.IsSupported(mj.RoomVersion) {
		return fmt.Errorf("%w: %s", rooms.ErrUnsupportedRoomVersion, mj.RoomVersion)
	}
	signed, evID, err := s.cfg.Rooms.SignTemplate(mj.RoomVersion, mj.Event, user, event.MembershipJoin)
	if err != nil {
		return err
	}
	sj, err := s.cfg.Client.SendJoin(ctx, &federation.ReqSendJoin{RoomID: roomID, EventID: evID, Event: signed, Via: via})
	if err != nil {
		return fmt.Errorf("send_join: %w", err)
	}
	joinEv := json.RawMessage(signed)
	if len(sj.Event) > 0 {
		// The resident server may have added its signature; the event ID
		// must not change.
		if got, _, err := s.cfg.Rooms.CheckRemote(sj.Event, mj.RoomVersion); err == nil && got == evID {
			joinEv = sj.Event
		}
	}
	got, err := s.cfg.Rooms.JoinRemote(ctx, rooms.RemoteJoin{
		RoomID: roomID, Version: mj.RoomVersion, Event: joinEv, State: sj.State, AuthChain: sj.AuthChain,
	})
	if err != nil {
		return err
	}
	s.count("remote_join_" + got.Outcome.String())
	return nil
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range ss {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// Leave declines an invite to a room this server is not in: make_leave
// and send_leave through the inviter's server, and the leave is kept so
// the user's /sync shows it. ErrLocal when this server is in the room
// (the ordinary local leave reaches the other servers through the
// sender).
func (s *Server) Leave(ctx context.Context, user id.UserID, roomID id.RoomID) error {
	if s.hasState(ctx, roomID) {
		return ErrLocal
	}
	inv, err := s.cfg.Store.CurrentStateEvent(ctx, string(roomID), "m.room.member", string(user))
	if errors.Is(err, store.ErrNotFound) {
		return ErrLocal
	} else if err != nil {
		return err
	}
	room, err := s.cfg.Store.GetRoom(ctx, string(roomID))
	if err != nil {
		return err
	}
	if inv.Membership != "invite" || s.cfg.Client == nil {
		return ErrLocal
	}
	via := id.UserID(inv.Sender).Homeserver()
	if s.cfg.Servers.ServerAllowed(via) != nil {
		return fmt.Errorf("%w: %s", ErrRefused, via)
	}
	ml, err := s.cfg.Client.MakeLeave(ctx, &federation.ReqMakeLeave{RoomID: roomID, UserID: user, Via: via})
	if err != nil {
		return fmt.Errorf("%w: make_leave: %w", ErrNoServer, err)
	}
	if string(ml.RoomVersion) != room.Version && ml.RoomVersion != "" {
		return fmt.Errorf("%w: %s", rooms.ErrUnsupportedRoomVersion, ml.RoomVersion)
	}
	version := id.RoomVersion(room.Version)
	signed, evID, err := s.cfg.Rooms.SignTemplate(version, ml.Event, user, event.MembershipLeave)
	if err != nil {
		return err
	}
	if err := s.cfg.Client.SendLeave(ctx, &federation.ReqSendLeave{RoomID: roomID, EventID: evID, Event: signed, Via: via}); err != nil {
		return fmt.Errorf("%w: send_leave: %w", ErrNoServer, err)
	}
	_, err = s.cfg.Rooms.StoreStub(ctx, version, signed)
	return err
}

// Invite invites invitee (of another server) to roomID: the event is
// built here, countersigned by the invitee's server (/invite), then
// committed, and the sender takes it to the room's other servers.
func (s *Server) Invite(ctx context.Context, inviter id.UserID, roomID id.RoomID, invitee id.UserID, reason string) (id.EventID, error) {
	_, hs, err := invitee.Parse()
	if err != nil {
		return "", fmt.Errorf("%w: %w", rooms.ErrBadEvent, err)
	}
	if hs == s.name {
		return "", ErrLocal
	}
	if s.cfg.Client == nil || s.cfg.Servers.ServerAllowed(hs) != nil || s.cfg.Users.UserAllowed(ctx, string(invitee)) != nil {
		s.count("invite_out_refused")
		return "", fmt.Errorf("%w: %s", ErrRefused, invitee)
	}
	content := map[string]any{"membership": "invite"}
	if reason != "" {
		content["reason"] = reason
	}
	raw, _ := json.Marshal(content)
	sk := string(invitee)
	built, err := s.cfg.Rooms.Build(ctx, rooms.Submit{RoomID: roomID, Sender: inviter, Type: event.StateMember.Type, StateKey: &sk, Content: raw})
	if err != nil {
		return "", err
	}
	stripped := make([]json.RawMessage, 0, len(built.InviteState))
	for _, st := range built.InviteState {
		b, err := json.Marshal(st)
		if err != nil {
			return "", err
		}
		stripped = append(stripped, b)
	}
	resp, err := s.cfg.Client.SendInvite(ctx, &federation.ReqSendInvite{
		RoomID: roomID, UserID: invitee, Event: built.Event, InviteRoomState: stripped, RoomVersion: built.Version,
	})
	if err != nil {
		return "", fmt.Errorf("%w: invite: %w", ErrNoServer, err)
	}
	got, _, err := s.cfg.Rooms.CheckRemote(resp.Event, built.Version)
	if err != nil || got != built.EventID {
		return "", fmt.Errorf("%w: the invitee's server answered another event", rooms.ErrBadPDU)
	}
	rec, err := s.cfg.Rooms.Receive(ctx, resp.Event)
	if err != nil {
		return "", err
	}
	if rec.Outcome == rooms.Rejected || rec.Outcome == rooms.SoftFailed {
		return "", fmt.Errorf("%w: the invite is %s", rooms.ErrForbidden, rec.Outcome)
	}
	return built.EventID, nil
}

// hasState reports whether this server holds roomID's state (it created
// or joined the room), as opposed to knowing it from an invite only: then
// memberships are changed locally, and the sender takes them to the
// room's other servers.
func (s *Server) hasState(ctx context.Context, roomID id.RoomID) bool {
	_, err := s.cfg.Store.CurrentStateEvent(ctx, string(roomID), "m.room.create", "")
	return err == nil
}
