//go:build !cgo || nocrypto

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/configupgrade"
	"go.mau.fi/util/dbutil"
	"go.mau.fi/util/exzerolog"
	"gopkg.in/yaml.v3"
	_ "modernc.org/sqlite" // the bridge database: "sqlite" for dbutil

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The bridge runs in three steps, so the test can install its
// registration in the hub between the first two:
//
//  1. build the bridge config (the appservice listens on a port of its
//     own, known before the registration is written) and write the
//     registration file exactly as bridgev2's -g does
//     (bridgeconfig.Config.GenerateRegistration);
//  2. print "TESTBRIDGE <url> <registration file>" and serve the
//     appservice API and the control API;
//  3. on POST /_testbridge/start, start the bridge (bridgev2.Bridge.Start:
//     the start-up checks against the homeserver, then the logins).
//
// Only what a bridge binary's main (mxmain) does is done here by hand:
// mxmain needs cgo for its SQLite error types.
func main() {
	hs := flag.String("homeserver", "", "homeserver URL")
	domain := flag.String("domain", "", "homeserver server name")
	dbPath := flag.String("db", "", "SQLite database file of the bridge")
	regPath := flag.String("registration", "", "where to write the registration file")
	flag.Parse()
	if *hs == "" || *domain == "" || *dbPath == "" || *regPath == "" {
		fmt.Fprintln(os.Stderr, "usage: testbridge -homeserver URL -domain NAME -db FILE -registration FILE")
		os.Exit(2)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, NoColor: true, TimeFormat: "15:04:05.000"}).
		With().Timestamp().Logger().Level(zerolog.DebugLevel)
	exzerolog.SetupDefaults(&log)
	if err := run(log, *hs, *domain, *dbPath, *regPath); err != nil {
		log.Error().Err(err).Msg("testbridge failed")
		os.Exit(1)
	}
}

// bridgeConfig is the bridge's config.yaml: what a deployment sets, the
// rest left to bridgev2's defaults.
const bridgeConfig = `
homeserver:
    address: %[1]s
    domain: %[2]s
    software: standard
appservice:
    address: %[3]s
    hostname: 127.0.0.1
    id: eimistest
    bot:
        username: eimistestbot
    ephemeral_events: true
    username_template: "eimistest_{{.}}"
bridge:
    command_prefix: "!eimistest"
    personal_filtering_spaces: true
    bridge_status_notices: errors
    portal_event_buffer: 64
    permissions:
        "*": relay
        "%[2]s": user
matrix:
    message_error_notices: true
    sync_direct_chat_list: true
    federate_rooms: true
provisioning:
    shared_secret: disable
`

func run(log zerolog.Logger, hs, domain, dbPath, regPath string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	var cfg bridgeconfig.Config
	if err := yaml.Unmarshal([]byte(fmt.Sprintf(bridgeConfig, hs, domain, url)), &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg.Bridge.Backfill = cfg.Backfill
	// The appservice API is served on ln below, with the control API.
	cfg.AppService.NoServer = true
	if err := cfg.GenerateRegistration().Save(regPath); err != nil {
		return fmt.Errorf("registration: %w", err)
	}

	db, err := dbutil.NewWithDialect("file:"+dbPath+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate", "sqlite")
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	db.Owner = "megabridge/eimis-testbridge"
	db.Log = dbutil.ZeroLogger(log.With().Str("db_section", "main").Logger())
	n := &network{members: map[networkid.PortalID][]networkid.UserID{}}
	conn := matrix.NewConnector(&cfg)
	br := bridgev2.NewBridge("", db, log, &cfg.Bridge, conn, n, commands.NewProcessor)

	started := make(chan error, 1)
	mux := http.NewServeMux()
	n.routes(mux, conn)
	mux.HandleFunc("POST /_testbridge/start", func(w http.ResponseWriter, r *http.Request) {
		err := br.Start(context.Background())
		started <- err
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		reply(w, map[string]bool{"started": true})
	})
	mux.Handle("/", conn.AS.Router)
	go func() { _ = http.Serve(ln, mux) }()
	fmt.Printf("TESTBRIDGE %s %s\n", url, regPath)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	select {
	case <-stop:
		return nil
	case err := <-started:
		if err != nil {
			return err
		}
	}
	<-stop
	br.StopWithTimeout(5 * time.Second)
	return nil
}

// network is the connector: a remote network whose users and messages
// come from the control API.
type network struct {
	br *bridgev2.Bridge

	mu       sync.Mutex
	members  map[networkid.PortalID][]networkid.UserID
	received []received
	seq      int64
}

type received struct {
	Login  string `json:"login"`
	Portal string `json:"portal"`
	RoomID string `json:"room_id"`
	Sender string `json:"sender"`
	Text   string `json:"text"`
}

var _ bridgev2.NetworkConnector = (*network)(nil)

func (n *network) Init(br *bridgev2.Bridge)        { n.br = br }
func (n *network) Start(ctx context.Context) error { return nil }
func (n *network) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{
		DisplayName: "EIMIS test network", NetworkURL: "https://eimis.example/testnet", NetworkID: "eimistest",
		BeeperBridgeType: "github.com/eimis-hub/eimis/bridges/appservice/testbridge", DefaultPort: 29399,
	}
}
func (n *network) GetDBMetaTypes() database.MetaTypes { return database.MetaTypes{} }
func (n *network) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{}
}
func (n *network) GetConfig() (string, any, configupgrade.Upgrader) { return "{}", nil, nil }
func (n *network) GetBridgeInfoVersion() (int, int)                 { return 1, 1 }
func (n *network) LoadUserLogin(ctx context.Context, login *bridgev2.UserLogin) error {
	login.Client = &client{n: n, login: login}
	return nil
}
func (n *network) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{Name: "Control API", ID: "control", Description: "Logins are made by the test's control API"}}
}
func (n *network) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	return nil, errors.New("logins are made by the test's control API")
}

func (n *network) addMember(portal networkid.PortalID, u networkid.UserID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.members[portal] {
		if m == u {
			return
		}
	}
	n.members[portal] = append(n.members[portal], u)
}

// client is one Matrix user's connection to the remote network.
type client struct {
	n     *network
	login *bridgev2.UserLogin
}

var _ bridgev2.NetworkAPI = (*client)(nil)

func (c *client) Connect(ctx context.Context)  {}
func (c *client) Disconnect()                  {}
func (c *client) IsLoggedIn() bool             { return true }
func (c *client) LogoutRemote(context.Context) {}
func (c *client) IsThisUser(ctx context.Context, u networkid.UserID) bool {
	return string(u) == string(c.login.ID)
}

func (c *client) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	members := bridgev2.ChatMemberMap{}
	members.Set(bridgev2.ChatMember{EventSender: bridgev2.EventSender{IsFromMe: true, SenderLogin: c.login.ID}, Membership: event.MembershipJoin})
	c.n.mu.Lock()
	for _, u := range c.n.members[portal.ID] {
		members.Set(bridgev2.ChatMember{EventSender: bridgev2.EventSender{Sender: u}, Membership: event.MembershipJoin})
	}
	c.n.mu.Unlock()
	name := "Remote chat " + string(portal.ID)
	return &bridgev2.ChatInfo{Name: &name, Members: &bridgev2.ChatMemberList{MemberMap: members}}, nil
}

func (c *client) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	// What a real network says; the hub imposes the directory's name.
	name := "Remote user " + string(ghost.ID)
	return &bridgev2.UserInfo{Name: &name}, nil
}

func (c *client) GetCapabilities(ctx context.Context, portal *bridgev2.Portal) *event.RoomFeatures {
	return &event.RoomFeatures{}
}

func (c *client) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	c.n.mu.Lock()
	c.n.seq++
	msgID := networkid.MessageID("matrix-" + strconv.FormatInt(c.n.seq, 10))
	c.n.received = append(c.n.received, received{
		Login: string(c.login.ID), Portal: string(msg.Portal.ID), RoomID: string(msg.Portal.MXID),
		Sender: string(msg.Event.Sender), Text: msg.Content.Body,
	})
	c.n.mu.Unlock()
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID: msgID, SenderID: networkid.UserID(c.login.ID), Timestamp: time.Now(),
	}}, nil
}

// routes serves the control API under /_testbridge/.
func (n *network) routes(mux *http.ServeMux, conn *matrix.Connector) {
	mux.HandleFunc("POST /_testbridge/login", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			MXID    id.UserID `json:"mxid"`
			LoginID string    `json:"login"`
		}
		if !decode(w, r, &req) {
			return
		}
		user, err := n.br.GetUserByMXID(r.Context(), req.MXID)
		if err != nil {
			fail(w, err)
			return
		}
		login, err := user.NewLogin(r.Context(), &database.UserLogin{ID: networkid.UserLoginID(req.LoginID), RemoteName: req.LoginID}, nil)
		if err != nil {
			fail(w, err)
			return
		}
		login.Client.Connect(login.Log.WithContext(context.Background()))
		reply(w, map[string]string{"login": string(login.ID)})
	})
	mux.HandleFunc("POST /_testbridge/remote-message", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Login, Portal, Sender, Text string
		}
		if !decode(w, r, &req) {
			return
		}
		login := n.br.GetCachedUserLoginByID(networkid.UserLoginID(req.Login))
		if login == nil {
			fail(w, fmt.Errorf("no login %q", req.Login))
			return
		}
		portal, sender := networkid.PortalID(req.Portal), networkid.UserID(req.Sender)
		n.addMember(portal, sender)
		n.mu.Lock()
		n.seq++
		msgID := networkid.MessageID("remote-" + strconv.FormatInt(n.seq, 10))
		n.mu.Unlock()
		// A text message from a remote user; it creates the portal when
		// the chat is new.
		res := login.QueueRemoteEvent(&simplevent.Message[string]{
			EventMeta: simplevent.EventMeta{
				Type: bridgev2.RemoteEventMessage, PortalKey: networkid.PortalKey{ID: portal, Receiver: login.ID},
				Sender: bridgev2.EventSender{Sender: sender}, CreatePortal: true, Timestamp: time.Now(),
			},
			ID: msgID, Data: req.Text,
			ConvertMessageFunc: func(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, text string) (*bridgev2.ConvertedMessage, error) {
				return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
					Type: event.EventMessage, Content: &event.MessageEventContent{MsgType: event.MsgText, Body: text},
				}}}, nil
			},
		})
		out := map[string]any{"success": res.Success, "queued": res.Queued, "ignored": res.Ignored, "event_id": res.EventID}
		if res.Error != nil {
			out["error"] = res.Error.Error()
		}
		reply(w, out)
	})
	mux.HandleFunc("GET /_testbridge/portal", func(w http.ResponseWriter, r *http.Request) {
		key := networkid.PortalKey{ID: networkid.PortalID(r.URL.Query().Get("portal")), Receiver: networkid.UserLoginID(r.URL.Query().Get("login"))}
		portal, err := n.br.GetExistingPortalByKey(r.Context(), key)
		if err != nil {
			fail(w, err)
			return
		}
		room := ""
		if portal != nil {
			room = string(portal.MXID)
		}
		reply(w, map[string]string{"room_id": room})
	})
	mux.HandleFunc("GET /_testbridge/received", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		reply(w, append([]received{}, n.received...))
	})
	mux.HandleFunc("POST /_testbridge/ghost-register", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Sender string }
		if !decode(w, r, &req) {
			return
		}
		// Exactly what bridgev2 does before a ghost first acts.
		intent := conn.AS.Intent(conn.FormatGhostMXID(networkid.UserID(req.Sender)))
		err := intent.EnsureRegistered(r.Context())
		out := map[string]any{"user_id": intent.UserID, "ok": err == nil}
		var httpErr mautrix.HTTPError
		if errors.As(err, &httpErr) && httpErr.RespError != nil {
			out["status"] = httpErr.Response.StatusCode
			out["errcode"] = httpErr.RespError.ErrCode
			out["error"] = httpErr.RespError.Err
			out["eimis_code"] = httpErr.RespError.ExtraData["eimis_code"]
		} else if err != nil {
			out["error"] = err.Error()
		}
		reply(w, out)
	})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}
