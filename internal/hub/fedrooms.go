package hub

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/federation/inbound"
	"github.com/eimis-hub/eimis/internal/clientapi"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/rooms"
)

// The room side of federation (federation/inbound), built from the hub's
// parts. The transport (X-Matrix, TLS, the signed list, key fetching, the
// outbound client) is another package's; it hands its parts to
// FederationRooms, which returns the routes for its listener.
//
// Until FederationRooms is called, nothing changes: remote users are
// refused by the gate (EIMIS_FOREIGN_SERVER), remote events have no key
// source, and the Client-Server API keeps every room local.

// FederationParts are what the transport provides.
type FederationParts struct {
	// Client reaches peers (a *federation.Client that signs requests and
	// never dials a server outside the list).
	Client inbound.Client
	// Servers is the signed list: may this server federate?
	Servers inbound.ServerAllowed
	// RemoteUsers is the list's rule for users of other servers
	// (server_vouched or directory); local users are the policy's.
	RemoteUsers inbound.UserAllowed
	// Keys fetches other servers' signing keys (old ones kept).
	Keys rooms.KeyFunc
	// Counter counts refusals and outcomes (optional).
	Counter inbound.Counter
	// Optional sinks of the encryption work.
	ToDevice   inbound.ToDeviceSink
	DeviceList inbound.DeviceListSink
	Presence   inbound.PresenceSink
}

// fedRooms holds what the room server and the Client-Server API read
// late, once the transport is there.
type fedRooms struct {
	keys        atomic.Pointer[rooms.KeyFunc]
	remoteUsers atomic.Pointer[inbound.UserAllowed]
	api         *clientapi.API
	in          *inbound.Server
}

// remoteKeys is the room server's RemoteKeys: the transport's key
// fetcher, or an error before it is set.
func (f *fedRooms) remoteKeys(server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
	k := f.keys.Load()
	if k == nil {
		return "", time.Time{}, fmt.Errorf("federation is not enabled: no key for %s", server)
	}
	return (*k)(server, keyID, minValidUntil)
}

// fedGate is the room server's gate: the policy for local users, the
// list's rule for users of other servers (refused while federation is
// off, as the policy alone does).
type fedGate struct {
	policy *policy.Engine
	fed    *fedRooms
	server string
}

func (g fedGate) CheckUser(u id.UserID) error {
	if u.Homeserver() == g.server || u.Homeserver() == "" {
		return g.policy.CheckUser(u)
	}
	ru := g.fed.remoteUsers.Load()
	if ru == nil {
		return &policy.Refusal{Code: policy.ForeignServer, Subject: string(u)}
	}
	if err := (*ru).UserAllowed(context.Background(), string(u)); err != nil {
		return &policy.Refusal{Code: policy.ForeignServer, Subject: string(u)}
	}
	return nil
}

func (g fedGate) DisplayName(u id.UserID) (string, bool) { return g.policy.DisplayName(u) }

// hubUsers is inbound's UserAllowed: local users by the policy (an
// authorised practitioner), others by the list's rule.
type hubUsers struct{ gate fedGate }

func (u hubUsers) UserAllowed(_ context.Context, userID string) error {
	return u.gate.CheckUser(id.UserID(userID))
}

// FederationRooms builds the room side of federation from the hub's parts
// and the transport's, turns on remote joins, invites and leaves in the
// Client-Server API, and returns the routes the federation listener must
// serve (authenticated ones: the origin in the context, fedctx). Call it
// once, before serving.
func (h *Hub) FederationRooms(p FederationParts) []fedctx.Route {
	if p.Keys != nil {
		h.fed.keys.Store(&p.Keys)
	}
	if p.RemoteUsers != nil {
		h.fed.remoteUsers.Store(&p.RemoteUsers)
	}
	gate := fedGate{policy: h.Policy, fed: &h.fed, server: h.Config.ServerName}
	h.fed.in = inbound.New(inbound.Config{
		Rooms: h.Rooms, Store: h.Store, Client: p.Client, Servers: p.Servers, Users: hubUsers{gate},
		Typing: h.Sync, Receipts: h.Store, Waker: h.Sync,
		Presence: p.Presence, ToDevice: p.ToDevice, DeviceList: p.DeviceList, Counter: p.Counter,
		Log: h.Log.With("component", "federation-rooms"),
	})
	if h.fed.api != nil {
		h.fed.api.SetFederation(h.fed.in)
	}
	return h.fed.in.Routes()
}

// FederationInbound is the room side once built (nil before): the
// sender asks it which servers are in a room.
func (h *Hub) FederationInbound() *inbound.Server { return h.fed.in }

// openFederationRooms mounts the room side of federation on the
// federation listener when federation is on: the transport's client, list
// and key ring are its parts. After openDoors, so the Client-Server API
// learns to join, invite and leave across servers.
func (h *Hub) openFederationRooms(_, _ context.Context) error {
	f := h.Fed
	if f == nil {
		return nil
	}
	f.Routes = append(f.Routes, h.FederationRooms(FederationParts{
		Client: f.Client, Servers: f.List, RemoteUsers: f.List, Keys: f.Keys.KeyFunc(),
	})...)
	return nil
}
