package sdk

import (
	"encoding/json"
	"strings"
	"time"
)

// UserID is a Matrix user ID of the hub, "@<idNat>:<server>" for a
// practitioner.
type UserID string

// IDNat is the practitioner's national identifier (8 + RPPS), the
// localpart of the user ID.
func (u UserID) IDNat() string {
	s := strings.TrimPrefix(string(u), "@")
	lp, _, _ := strings.Cut(s, ":")
	return lp
}

// RoomID is a Matrix room ID.
type RoomID string

// EventID is a Matrix event ID.
type EventID string

// MsgType is the kind of a message.
type MsgType string

// Message types. Media types need a URL (an mxc:// URI from Upload or
// the hub's media endpoint).
const (
	MsgText   MsgType = "m.text"
	MsgNotice MsgType = "m.notice"
	MsgEmote  MsgType = "m.emote"
	MsgImage  MsgType = "m.image"
	MsgFile   MsgType = "m.file"
	MsgAudio  MsgType = "m.audio"
	MsgVideo  MsgType = "m.video"
)

// Welcome describes an established connection.
type Welcome struct {
	Protocol   int      `json:"protocol"`
	BridgeID   string   `json:"bridge_id"`
	Operator   string   `json:"operator"`
	ServerName string   `json:"server_name"`
	Users      []UserID `json:"users"`
	// Cursor is the last event acknowledged; the hub sends what follows.
	Cursor string `json:"cursor"`
	// Resumed is false when the hub kept no backlog for this bridge (a
	// new bridge, or one away longer than the hub's retention): events
	// may have been missed, resynchronise (RoomInfo of your rooms).
	Resumed bool   `json:"resumed"`
	Limits  Limits `json:"limits"`
}

// Limits are the hub's bounds for this connection.
type Limits struct {
	MaxFrameBytes       int `json:"max_frame_bytes"`
	MaxUnacked          int `json:"max_unacked"`
	MaxInflightRequests int `json:"max_inflight_requests"`
}

// BoundUser is a practitioner the bridge now acts for.
type BoundUser struct {
	UserID      UserID `json:"user_id"`
	IDNat       string `json:"idnat"`
	DisplayName string `json:"display_name"`
	// Rooms the practitioner is already in or invited to (from another
	// app or a Matrix client).
	Rooms []RoomMembership `json:"rooms"`
}

// RoomMembership is a user's membership of a room.
type RoomMembership struct {
	RoomID     RoomID `json:"room_id"`
	Membership string `json:"membership"`
}

// CreateRoom asks for a new room.
type CreateRoom struct {
	// As is the bound user creating the room: an idNat or a user ID.
	As    string
	Name  string
	Topic string
	// Invite lists users by idNat or user ID. Practitioners of the
	// directory without an account get one, so the invite waits for them.
	Invite []string
	// IsDirect marks a one-to-one conversation.
	IsDirect bool
}

// RoomInfo is a room's current name, topic and members.
type RoomInfo struct {
	RoomID  RoomID   `json:"room_id"`
	Name    string   `json:"name"`
	Topic   string   `json:"topic"`
	Members []Member `json:"members"`
}

// Member is one membership of a room.
type Member struct {
	UserID      UserID `json:"user_id"`
	Membership  string `json:"membership"`
	DisplayName string `json:"display_name"`
}

// Message is a message to send.
type Message struct {
	// As is the bound user sending: an idNat or a user ID.
	As     string
	RoomID RoomID
	// TxnID is your own identifier of this message: sending again with
	// the same TxnID (after a timeout, a reconnection, a crash) gives the
	// same event, never a second one. Unique per user.
	TxnID string
	// Type defaults to MsgText.
	Type MsgType
	Body string
	// HTML, when set, is the formatted body (org.matrix.custom.html).
	HTML string
	// ReplyTo answers an earlier event of the room.
	ReplyTo EventID
	// URL, Filename and Info describe a file (MsgImage, MsgFile…).
	URL      string
	Filename string
	Info     *MediaInfo
}

// MediaInfo is Matrix's info object of a file message.
type MediaInfo struct {
	MimeType     string `json:"mimetype,omitempty"`
	Size         int64  `json:"size,omitempty"`
	Width        int    `json:"w,omitempty"`
	Height       int    `json:"h,omitempty"`
	DurationMS   int64  `json:"duration,omitempty"`
	ThumbnailURL string `json:"thumbnail_url,omitempty"`
}

// Edit replaces the text of an earlier message of the same user.
type Edit struct {
	As     string
	RoomID RoomID
	// TxnID identifies this edit, as Message.TxnID does.
	TxnID   string
	EventID EventID
	// Type is MsgText (default), MsgNotice or MsgEmote.
	Type MsgType
	Body string
	HTML string
}

// Practitioner is a directory search result.
type Practitioner struct {
	UserID      UserID   `json:"user_id"`
	IDNat       string   `json:"idnat"`
	DisplayName string   `json:"display_name"`
	Professions []string `json:"professions"` // TRE_G15 codes: 10 Médecin, 60 Infirmier…
	// Reachable: the practitioner has an account on the hub already.
	Reachable bool `json:"reachable"`
}

// StrippedState is a piece of a room's state shown with an invite.
type StrippedState struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Sender   UserID          `json:"sender"`
	Content  json.RawMessage `json:"content"`
}

// Event is an event of a room where one of the bridge's users is a
// member. Events come in room order; the SDK acknowledges each after
// your handler returns nil, so after a reconnection the hub resumes right
// after it.
type Event struct {
	// Cursor is the event's position in the bridge's feed.
	Cursor string
	RoomID RoomID
	// Users are the bridge's users concerned: members of the room at this
	// event, or the subject of a membership event.
	Users []UserID

	ID        EventID
	Type      string
	Sender    UserID
	StateKey  *string
	Content   json.RawMessage
	Timestamp time.Time
	Redacts   EventID
	// InviteState comes with an invite of one of the bridge's users: the
	// room's name, topic… so the invite can be shown before joining.
	InviteState []StrippedState
	// Raw is the event as the hub sent it (Matrix Client-Server format).
	Raw json.RawMessage
}

// ReceivedMessage is the content of an m.room.message event.
type ReceivedMessage struct {
	Type MsgType
	Body string
	HTML string
	// ReplyTo is the event this message answers, if any.
	ReplyTo EventID
	// Replaces is set for an edit: the message whose text is now Body.
	Replaces EventID
	URL      string
	Filename string
	Info     *MediaInfo
}

type wireMessage struct {
	MsgType       MsgType    `json:"msgtype"`
	Body          string     `json:"body"`
	Format        string     `json:"format"`
	FormattedBody string     `json:"formatted_body"`
	URL           string     `json:"url"`
	Filename      string     `json:"filename"`
	Info          *MediaInfo `json:"info"`
	RelatesTo     *struct {
		RelType   string `json:"rel_type"`
		EventID   string `json:"event_id"`
		InReplyTo *struct {
			EventID string `json:"event_id"`
		} `json:"m.in_reply_to"`
	} `json:"m.relates_to"`
	NewContent *wireMessage `json:"m.new_content"`
}

// Message decodes an m.room.message. For an edit it returns the new
// text (m.new_content) with Replaces set.
func (e *Event) Message() (*ReceivedMessage, bool) {
	if e.Type != "m.room.message" {
		return nil, false
	}
	var w wireMessage
	if err := json.Unmarshal(e.Content, &w); err != nil || w.MsgType == "" {
		return nil, false
	}
	m := &ReceivedMessage{Type: w.MsgType, Body: w.Body, URL: w.URL, Filename: w.Filename, Info: w.Info}
	if w.Format == "org.matrix.custom.html" {
		m.HTML = w.FormattedBody
	}
	if r := w.RelatesTo; r != nil {
		if r.InReplyTo != nil {
			m.ReplyTo = EventID(r.InReplyTo.EventID)
		}
		if r.RelType == "m.replace" && w.NewContent != nil {
			m.Replaces = EventID(r.EventID)
			m.Type, m.Body, m.HTML = w.NewContent.MsgType, w.NewContent.Body, ""
			if w.NewContent.Format == "org.matrix.custom.html" {
				m.HTML = w.NewContent.FormattedBody
			}
		}
	}
	return m, true
}

// MembershipChange is the content of an m.room.member event.
type MembershipChange struct {
	// User is whose membership changed.
	User UserID
	// Membership is join, invite, leave or ban. A leave whose Sender is
	// not User is a kick.
	Membership  string
	DisplayName string
	Reason      string
	IsDirect    bool
}

// Membership decodes an m.room.member event.
func (e *Event) Membership() (*MembershipChange, bool) {
	if e.Type != "m.room.member" || e.StateKey == nil {
		return nil, false
	}
	var c struct {
		Membership  string `json:"membership"`
		DisplayName string `json:"displayname"`
		Reason      string `json:"reason"`
		IsDirect    bool   `json:"is_direct"`
	}
	if err := json.Unmarshal(e.Content, &c); err != nil {
		return nil, false
	}
	return &MembershipChange{User: UserID(*e.StateKey), Membership: c.Membership, DisplayName: c.DisplayName,
		Reason: c.Reason, IsDirect: c.IsDirect}, true
}

// UserRevoked tells that the bridge may no longer act for a bound
// practitioner: they lost their authorisation (struck off the health
// directory…: the hub has taken them out of every room; bind again if
// they come back), or they (or an operator) revoked this bridge's
// binding (Code EIMIS_BINDING_REVOKED), or it was made without consent
// (EIMIS_CONSENT_REQUIRED): bind again only with a new proof of consent.
// The hub has removed the binding either way.
type UserRevoked struct {
	UserID UserID `json:"user_id"`
	IDNat  string `json:"idnat"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// OperatorSuspended tells that the bridge's operator was suspended or
// revoked on the hub's allow-list. The hub closes the connection next;
// Run keeps trying to reconnect while the operator is suspended, and
// returns once it is revoked.
type OperatorSuspended struct {
	Operator string `json:"operator"`
	Status   string `json:"status"`
	Code     string `json:"code"`
	Reason   string `json:"reason"`
}
