package gateway

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/eimis-hub/eimis/internal/rooms"
)

// jsonInt is an integer as JSON Schema counts them: any number with no
// fraction, so 1e3 and 5.0 (valid "integer"s) decode as Go's int64 would
// refuse them.
type jsonInt int64

func (n *jsonInt) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = jsonInt(f)
	return nil
}

// Frames from a bridge, as decoded after their schema passed. The JSON
// Schemas in schemas/bridge/v1 are the definition; these structs only
// carry what the schemas already checked.

type helloFrame struct {
	Protocol jsonInt `json:"protocol"`
	Token    string  `json:"token"`
	Client   string  `json:"client"`
}

type ackFrame struct {
	Cursor string `json:"cursor"`
}

type bindReq struct {
	IDNat    string `json:"idnat"`
	PSCProof string `json:"psc_proof"`
	LinkCode string `json:"link_code"`
}

type createRoomReq struct {
	User     string   `json:"user"`
	Name     string   `json:"name"`
	Topic    string   `json:"topic"`
	Invite   []string `json:"invite"`
	IsDirect bool     `json:"is_direct"`
}

// roomReq is every request naming a user and a room: room_info, join,
// invite, leave, read_receipt, typing.
type roomReq struct {
	User      string  `json:"user"`
	RoomID    string  `json:"room_id"`
	Invitee   string  `json:"invitee"`
	Reason    string  `json:"reason"`
	EventID   string  `json:"event_id"`
	Typing    bool    `json:"typing"`
	TimeoutMS jsonInt `json:"timeout_ms"`
	Limit     jsonInt `json:"limit"`
}

type sendReq struct {
	User          string          `json:"user"`
	RoomID        string          `json:"room_id"`
	TxnID         string          `json:"txn_id"`
	MsgType       string          `json:"msgtype"`
	Body          string          `json:"body"`
	Format        string          `json:"format"`
	FormattedBody string          `json:"formatted_body"`
	ReplyTo       string          `json:"reply_to"`
	URL           string          `json:"url"`
	Filename      string          `json:"filename"`
	Info          json.RawMessage `json:"info"`
	// EventID is the edited message (edit only).
	EventID string `json:"event_id"`
}

type searchReq struct {
	Query string  `json:"query"`
	Limit jsonInt `json:"limit"`
}

type uploadReq struct {
	User        string `json:"user"`
	ContentType string `json:"content_type"`
	Filename    string `json:"filename"`
	Data        string `json:"data"`
}

// Frames to a bridge.

type welcomeFrame struct {
	Type       string   `json:"type"`
	Protocol   int      `json:"protocol"`
	BridgeID   string   `json:"bridge_id"`
	Operator   string   `json:"operator"`
	ServerName string   `json:"server_name"`
	Users      []string `json:"users"`
	Cursor     string   `json:"cursor"`
	Resumed    bool     `json:"resumed"`
	Limits     limits   `json:"limits"`
}

type limits struct {
	MaxFrameBytes       int `json:"max_frame_bytes"`
	MaxUnacked          int `json:"max_unacked"`
	MaxInflightRequests int `json:"max_inflight_requests"`
}

type resultFrame struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Result any    `json:"result"`
}

type errorFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// RetryAfterMS: see Error.RetryAfter.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

type eventFrame struct {
	Type        string                `json:"type"`
	Cursor      string                `json:"cursor"`
	RoomID      string                `json:"room_id"`
	Users       []string              `json:"users"`
	Event       rooms.ClientEvent     `json:"event"`
	InviteState []rooms.StrippedState `json:"invite_state,omitempty"`
}

type userRevokedFrame struct {
	Type   string `json:"type"`
	UserID string `json:"user_id"`
	IDNat  string `json:"idnat,omitempty"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

type operatorSuspendedFrame struct {
	Type     string `json:"type"`
	Operator string `json:"operator"`
	Status   string `json:"status"`
	Code     string `json:"code"`
	Reason   string `json:"reason"`
}

// Results of requests.

type roomMembership struct {
	RoomID     string `json:"room_id"`
	Membership string `json:"membership"`
}

type bindResult struct {
	UserID      string           `json:"user_id"`
	IDNat       string           `json:"idnat"`
	DisplayName string           `json:"display_name,omitempty"`
	Rooms       []roomMembership `json:"rooms"`
}

type member struct {
	UserID      string `json:"user_id"`
	Membership  string `json:"membership"`
	DisplayName string `json:"display_name,omitempty"`
}

type roomInfoResult struct {
	RoomID  string   `json:"room_id"`
	Name    string   `json:"name,omitempty"`
	Topic   string   `json:"topic,omitempty"`
	Members []member `json:"members"`
}

type practitioner struct {
	UserID      string   `json:"user_id"`
	IDNat       string   `json:"idnat"`
	DisplayName string   `json:"display_name"`
	Professions []string `json:"professions"`
	// Reachable: the practitioner has an account on the hub (an app or a
	// Matrix client of theirs is connected, or was).
	Reachable bool `json:"reachable"`
}

// user names the bound user a request acts for (decodeActing).
func (r createRoomReq) user() string { return r.User }
func (r roomReq) user() string       { return r.User }
func (r sendReq) user() string       { return r.User }
func (r uploadReq) user() string     { return r.User }
