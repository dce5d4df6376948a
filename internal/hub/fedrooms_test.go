package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/rooms"
)

// fedNet connects hubs' federation routes in memory, standing in for the
// transport (X-Matrix, TLS): each request reaches the destination's
// routes with the caller as the authenticated origin.
type fedNet struct {
	t     *testing.T
	muxes map[string]http.Handler
	hubs  map[string]*hubtest.Hub
}

func (n *fedNet) ServerAllowed(server string) error {
	if _, ok := n.hubs[server]; !ok {
		return fmt.Errorf("%s is not in the list", server)
	}
	return nil
}

func (n *fedNet) UserAllowed(_ context.Context, user string) error {
	return n.ServerAllowed(id.UserID(user).Homeserver())
}

func (n *fedNet) keys(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
	h, ok := n.hubs[server]
	if !ok || string(keyID) != h.Key.ID {
		return "", time.Time{}, fmt.Errorf("no key %s of %s", keyID, server)
	}
	return id.SigningKey(h.Key.PublicBase64()), time.Now().Add(time.Hour), nil
}

type fedClient struct {
	from string
	n    *fedNet
}

func (c *fedClient) do(to, method, path string, q url.Values, body []byte, out any) error {
	mux, ok := c.n.muxes[to]
	if !ok {
		return fmt.Errorf("no server %s", to)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req := httptest.NewRequestWithContext(fedctx.WithOrigin(context.Background(), c.from), method, path, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, rec.Code, raw)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func esc(v any) string { return url.PathEscape(fmt.Sprint(v)) }

const fedPrefix = "/_matrix/federation/"

func (c *fedClient) GetMissingEvents(_ context.Context, req *federation.ReqGetMissingEvents) (*federation.RespGetMissingEvents, error) {
	body, _ := json.Marshal(req)
	var out federation.RespGetMissingEvents
	return &out, c.do(req.ServerName, http.MethodPost, fedPrefix+"v1/get_missing_events/"+esc(req.RoomID), nil, body, &out)
}

func (c *fedClient) GetStateIDs(_ context.Context, server string, roomID id.RoomID, eventID id.EventID) (*federation.RespGetStateIDs, error) {
	var out federation.RespGetStateIDs
	return &out, c.do(server, http.MethodGet, fedPrefix+"v1/state_ids/"+esc(roomID), url.Values{"event_id": {string(eventID)}}, nil, &out)
}

func (c *fedClient) GetEvent(_ context.Context, server string, eventID id.EventID) (*federation.RespBackfill, error) {
	var out federation.RespBackfill
	return &out, c.do(server, http.MethodGet, fedPrefix+"v1/event/"+esc(eventID), nil, nil, &out)
}

func (c *fedClient) GetEventAuthChain(_ context.Context, server string, roomID id.RoomID, eventID id.EventID) (*federation.RespGetEventAuthChain, error) {
	var out federation.RespGetEventAuthChain
	return &out, c.do(server, http.MethodGet, fedPrefix+"v1/event_auth/"+esc(roomID)+"/"+esc(eventID), nil, nil, &out)
}

func (c *fedClient) MakeJoin(_ context.Context, req *federation.ReqMakeJoin) (*federation.RespMakeJoin, error) {
	q := url.Values{}
	for _, v := range req.SupportedVersions {
		q.Add("ver", string(v))
	}
	var out federation.RespMakeJoin
	return &out, c.do(req.Via, http.MethodGet, fedPrefix+"v1/make_join/"+esc(req.RoomID)+"/"+esc(req.UserID), q, nil, &out)
}

func (c *fedClient) SendJoin(_ context.Context, req *federation.ReqSendJoin) (*federation.RespSendJoin, error) {
	var out federation.RespSendJoin
	return &out, c.do(req.Via, http.MethodPut, fedPrefix+"v2/send_join/"+esc(req.RoomID)+"/"+esc(req.EventID), nil, req.Event, &out)
}

func (c *fedClient) MakeLeave(_ context.Context, req *federation.ReqMakeLeave) (*federation.RespMakeLeave, error) {
	var out federation.RespMakeLeave
	return &out, c.do(req.Via, http.MethodGet, fedPrefix+"v1/make_leave/"+esc(req.RoomID)+"/"+esc(req.UserID), nil, nil, &out)
}

func (c *fedClient) SendLeave(_ context.Context, req *federation.ReqSendLeave) error {
	return c.do(req.Via, http.MethodPut, fedPrefix+"v2/send_leave/"+esc(req.RoomID)+"/"+esc(req.EventID), nil, req.Event, nil)
}

func (c *fedClient) SendInvite(_ context.Context, req *federation.ReqSendInvite) (*federation.RespSendInvite, error) {
	p, err := rooms.ParsePDU(req.Event)
	if err != nil {
		return nil, err
	}
	evID, _ := p.GetEventID(req.RoomVersion)
	body, _ := json.Marshal(req)
	var out federation.RespSendInvite
	return &out, c.do(req.UserID.Homeserver(), http.MethodPut, fedPrefix+"v2/invite/"+esc(req.RoomID)+"/"+esc(evID), nil, body, &out)
}

func (c *fedClient) QueryDirectory(_ context.Context, server string, alias id.RoomAlias) (*mautrix.RespAliasResolve, error) {
	var out mautrix.RespAliasResolve
	return &out, c.do(server, http.MethodGet, fedPrefix+"v1/query/directory", url.Values{"room_alias": {string(alias)}}, nil, &out)
}

func (c *fedClient) Backfill(_ context.Context, req *federation.ReqBackfill) (*federation.RespBackfill, error) {
	q := url.Values{"limit": {strconv.Itoa(req.Limit)}}
	for _, v := range req.BackfillFrom {
		q.Add("v", string(v))
	}
	var out federation.RespBackfill
	return &out, c.do(req.ServerName, http.MethodGet, fedPrefix+"v1/backfill/"+esc(req.RoomID), q, nil, &out)
}

func joinedMembers(t *testing.T, cli *mautrix.Client, room id.RoomID) []id.UserID {
	t.Helper()
	resp, err := cli.JoinedMembers(t.Context(), room)
	if err != nil {
		t.Fatalf("joined members: %v", err)
	}
	var out []id.UserID
	for u := range resp.Joined {
		out = append(out, u)
	}
	return out
}

// TestFederationRoomsHubs drives two hubs through the Client-Server API
// with the federation room side wired by FederationRooms: a user of B
// joins a room of A with ?server_name=, a user of B invites a user of A,
// who sees the invite in /sync and joins.
func TestFederationRoomsHubs(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			ctx := t.Context()
			n := &fedNet{t: t, muxes: map[string]http.Handler{}, hubs: map[string]*hubtest.Hub{}}
			for _, name := range []string{"a.test", "b.test"} {
				n.hubs[name] = hubtest.Start(t, hubtest.Options{Dialect: dialect, ServerName: name})
			}
			for name, h := range n.hubs {
				routes := h.FederationRooms(hub.FederationParts{
					Client: &fedClient{from: name, n: n}, Servers: n, RemoteUsers: n, Keys: n.keys,
				})
				mux := http.NewServeMux()
				for _, r := range routes {
					mux.Handle(r.Method+" "+r.Pattern, r.Handler)
				}
				n.muxes[name] = mux
			}
			a, b := n.hubs["a.test"], n.hubs["b.test"]
			alice := a.NewUser(t, "alice")
			bob := b.NewUser(t, "bob")

			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.JoinRoom(ctx, string(room.RoomID), &mautrix.ReqJoinRoom{Via: []string{"a.test"}}); err != nil {
				t.Fatalf("bob joins A's room: %v", err)
			}
			if got := joinedMembers(t, alice, room.RoomID); !slices.Contains(got, bob.UserID) {
				t.Errorf("A's members %v lack bob", got)
			}
			if got := joinedMembers(t, bob, room.RoomID); !slices.Contains(got, alice.UserID) || !slices.Contains(got, bob.UserID) {
				t.Errorf("B's members %v, want alice and bob", got)
			}

			// Invite across: bob's room on B, alice of A invited.
			room2, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.InviteUser(ctx, room2.RoomID, &mautrix.ReqInviteUser{UserID: alice.UserID}); err != nil {
				t.Fatalf("remote invite: %v", err)
			}
			hubtest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
				resp, err := alice.SyncRequest(ctx, 0, "", "", false, "")
				if err != nil {
					return err
				}
				if _, ok := resp.Rooms.Invite[room2.RoomID]; !ok {
					return fmt.Errorf("no invite in alice's sync")
				}
				return nil
			})
			if _, err := alice.JoinRoomByID(ctx, room2.RoomID); err != nil {
				t.Fatalf("alice accepts: %v", err)
			}
			if got := joinedMembers(t, bob, room2.RoomID); !slices.Contains(got, alice.UserID) {
				t.Errorf("B's members of its room %v lack alice", got)
			}
		})
	}
}
