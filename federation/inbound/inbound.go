// Package inbound is the room side of federation: the Server-Server API
// endpoints that carry rooms (send, make_join/send_join, make_leave/
// send_leave, invite, backfill, get_missing_events, state, state_ids,
// event, event_auth, query/profile, query/directory) and the client side
// of joining, leaving and inviting across servers.
//
// It sits between the federation transport (which authenticates each
// request and puts its origin in the context, see federation/fedctx) and
// the room server (internal/rooms), and talks to peers only through the
// narrow interfaces below, whose methods are those of mautrix-go's
// *federation.Client. Every event from the network goes through the room
// server's inbound pipeline; nothing here writes events itself.
package inbound

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

// Limits on what a peer may send or ask.
const (
	// MaxTxnPDUs and MaxTxnEDUs are the spec's transaction limits.
	MaxTxnPDUs = 50
	MaxTxnEDUs = 100
	// MaxTxnBytes bounds a transaction body: 50 PDUs at the 64 KiB PDU
	// limit plus room for EDUs.
	MaxTxnBytes = 4 << 20
	// MaxMissingEvents caps get_missing_events and backfill answers, and
	// the number of events asked for when this server fetches.
	MaxMissingEvents = 100
	// maxFetchRounds bounds how many times one inbound PDU may trigger a
	// fetch from its origin (get_missing_events, then state_ids).
	maxStateFetch = 500
)

// Fetcher is how the inbound pipeline fetches what a PDU refers to from
// the server that sent it (methods of *federation.Client).
type Fetcher interface {
	GetMissingEvents(ctx context.Context, req *federation.ReqGetMissingEvents) (*federation.RespGetMissingEvents, error)
	GetStateIDs(ctx context.Context, serverName string, roomID id.RoomID, eventID id.EventID) (*federation.RespGetStateIDs, error)
	GetEvent(ctx context.Context, serverName string, eventID id.EventID) (*federation.RespBackfill, error)
	GetEventAuthChain(ctx context.Context, serverName string, roomID id.RoomID, eventID id.EventID) (*federation.RespGetEventAuthChain, error)
}

// Membership is how local users join, leave and invite across servers
// (methods of *federation.Client).
type Membership interface {
	MakeJoin(ctx context.Context, req *federation.ReqMakeJoin) (*federation.RespMakeJoin, error)
	SendJoin(ctx context.Context, req *federation.ReqSendJoin) (*federation.RespSendJoin, error)
	MakeLeave(ctx context.Context, req *federation.ReqMakeLeave) (*federation.RespMakeLeave, error)
	SendLeave(ctx context.Context, req *federation.ReqSendLeave) error
	SendInvite(ctx context.Context, req *federation.ReqSendInvite) (*federation.RespSendInvite, error)
	QueryDirectory(ctx context.Context, serverName string, roomAlias id.RoomAlias) (*mautrix.RespAliasResolve, error)
}

// Backfiller fetches history from a peer (/messages running out).
type Backfiller interface {
	Backfill(ctx context.Context, req *federation.ReqBackfill) (*federation.RespBackfill, error)
}

// Client is everything this package asks of peers; *federation.Client
// implements it.
type Client interface {
	Fetcher
	Membership
	Backfiller
}

var _ Client = (*federation.Client)(nil)

// ServerAllowed is the trust space's list: nil if server may federate.
type ServerAllowed interface {
	ServerAllowed(server string) error
}

// UserAllowed is the trust space's rule for users: nil if userID (local or
// remote) may take part (join, be invited, invite).
type UserAllowed interface {
	UserAllowed(ctx context.Context, userID string) error
}

// RoomServer is what this package needs of internal/rooms.Server.
type RoomServer interface {
	ServerName() string
	Receive(ctx context.Context, raw json.RawMessage) (*rooms.Received, error)
	ReceiveWithPrevStates(ctx context.Context, raw json.RawMessage, prevStates map[id.EventID]store.StateMap) (*rooms.Received, error)
	StoreOutliers(ctx context.Context, roomID id.RoomID, version id.RoomVersion, raws []json.RawMessage) (*rooms.OutlierResult, error)
	JoinRemote(ctx context.Context, j rooms.RemoteJoin) (*rooms.Received, error)
	StoreStub(ctx context.Context, version id.RoomVersion, raw json.RawMessage) (*rooms.Received, error)
	MakeMembership(ctx context.Context, roomID id.RoomID, user id.UserID, membership event.Membership) (*rooms.Template, error)
	SignTemplate(version id.RoomVersion, tmpl json.RawMessage, user id.UserID, membership event.Membership) (json.RawMessage, id.EventID, error)
	CountersignInvite(version id.RoomVersion, raw json.RawMessage) (json.RawMessage, id.EventID, error)
	Build(ctx context.Context, req rooms.Submit) (*rooms.Built, error)
	CheckRemote(raw json.RawMessage, version id.RoomVersion) (id.EventID, *pdu.PDU, error)
}

// Store is what this package reads and records.
type Store interface {
	store.FederationTxnStore
	store.OutlierReader
	GetRoom(ctx context.Context, roomID string) (*store.Room, error)
	StateGroup(ctx context.Context, group int64) (store.StateMap, error)
	Extremities(ctx context.Context, roomID string) ([]store.Extremity, error)
	CurrentState(ctx context.Context, roomID string) ([]store.Event, error)
	CurrentStateEvent(ctx context.Context, roomID, evType, stateKey string) (*store.Event, error)
	RoomMembers(ctx context.Context, roomID, membership string) ([]store.Membership, error)
	ResolveAlias(ctx context.Context, alias string) (string, error)
	GetAccount(ctx context.Context, localpart string) (*store.Account, error)
}

// EDU sinks. Each is optional: an EDU whose sink is nil is counted and
// dropped (presence, for one, is best-effort).

// TypingSink is the hub's typing path (internal/syncapi.API.SetTyping).
type TypingSink interface {
	SetTyping(room, user string, typing bool, timeout time.Duration) error
}

// ReceiptSink stores a read receipt (the store's PutReceipt).
type ReceiptSink interface {
	PutReceipt(ctx context.Context, r store.Receipt) (int64, error)
}

// Waker wakes /sync for a room or user whose non-event data changed
// (internal/syncapi.API.Wake).
type Waker interface {
	Wake(room, user string)
}

// PresenceSink takes m.presence updates of remote users.
type PresenceSink interface {
	RemotePresence(ctx context.Context, origin string, userID id.UserID, content json.RawMessage) error
}

// ToDeviceSink takes m.direct_to_device EDUs for local devices (the
// encryption work delivers them). messages is keyed by local user ID, then
// device ID ("*" for all).
type ToDeviceSink interface {
	DeliverToDevice(ctx context.Context, origin string, sender id.UserID, evType, messageID string, messages map[id.UserID]map[id.DeviceID]json.RawMessage) error
}

// DeviceListSink takes remote users' device list and cross-signing key
// changes (m.device_list_update, m.signing_key_update), as received.
type DeviceListSink interface {
	DeviceListUpdate(ctx context.Context, origin string, content json.RawMessage) error
	SigningKeyUpdate(ctx context.Context, origin string, content json.RawMessage) error
}

// Counter counts what this package refuses, rejects and accepts (the
// metrics). what is a fixed label ("txn_replayed", "pdu_rejected", …),
// never content.
type Counter interface {
	Count(what string)
}

// Config builds a Server.
type Config struct {
	Rooms   RoomServer
	Store   Store
	Client  Client
	Servers ServerAllowed
	Users   UserAllowed

	Typing     TypingSink
	Receipts   ReceiptSink
	Waker      Waker
	Presence   PresenceSink
	ToDevice   ToDeviceSink
	DeviceList DeviceListSink
	Counter    Counter
	Log        *slog.Logger
}

// Server serves the room side of the Server-Server API.
type Server struct {
	cfg  Config
	name string
	log  *slog.Logger

	// txnMu serialises transactions per origin, so a retry racing the
	// original waits for its answer instead of processing it twice.
	txnMu sync.Mutex
	txns  map[string]*sync.Mutex
}

// New builds the server. Rooms, Store, Servers and Users are required;
// Client may be nil (then nothing is fetched and no remote membership
// works).
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Server{cfg: cfg, name: cfg.Rooms.ServerName(), log: cfg.Log, txns: map[string]*sync.Mutex{}}
}

func (s *Server) count(what string) {
	if s.cfg.Counter != nil {
		s.cfg.Counter.Count(what)
	}
}

func (s *Server) originLock(origin string) *sync.Mutex {
	s.txnMu.Lock()
	defer s.txnMu.Unlock()
	m := s.txns[origin]
	if m == nil {
		m = &sync.Mutex{}
		s.txns[origin] = m
	}
	return m
}
