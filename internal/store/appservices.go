package store

import (
	"context"
	"encoding/json"
	"time"
)

// Appservice is a registered Matrix application service (a bridge such as
// a mautrix bridgev2 bridge). The registration file's two secrets are
// treated differently, because they travel in opposite directions:
//
//   - the as_token is what the appservice presents to the hub: like an
//     access token, only its SHA-256 is kept (ASTokenHash);
//   - the hs_token is what the hub presents to the appservice on every
//     pushed transaction and ping: the hub must be able to send it, so it
//     is kept as given. A hash could not be sent, and encrypting it would
//     only move the secret to wherever the key lives (the same host).
type Appservice struct {
	ID string
	// Registration is the rest of the registration file (namespaces, URL,
	// sender…), in the appservice package's JSON form, without the tokens.
	// The store does not interpret it.
	Registration     json.RawMessage
	ASTokenHash      []byte
	HSToken          string
	ResponsibleIDNat string
	// StartPos is the stream position when the appservice was registered:
	// events at or below it predate the registration and are not pushed.
	StartPos  int64
	CreatedAt time.Time
}

// AppserviceMember is the membership of one of an appservice's users in a
// room, as the appservice's pusher last saw it in the event stream (the
// event at Pos).
type AppserviceMember struct {
	RoomID     string
	UserID     string
	Membership string
	Pos        int64
}

// AppserviceTxn is a transaction built for an appservice and not yet
// acknowledged by it: it is retried with the same ID and body.
type AppserviceTxn struct {
	ID   int64
	Body json.RawMessage
}

// AppserviceStore persists appservice registrations and their delivery
// state: the queue of events waiting to be pushed, the transactions, and
// which rooms hold one of the appservice's users. Deleting an appservice
// deletes all of it.
type AppserviceStore interface {
	// CreateAppservice registers an appservice (CreatedAt set by the store
	// when zero). A taken ID or as_token hash is ErrExists.
	CreateAppservice(ctx context.Context, a Appservice) error
	// Appservices lists every registration, ordered by ID.
	Appservices(ctx context.Context) ([]Appservice, error)
	// DeleteAppservice removes a registration and its delivery state
	// (ErrNotFound for an unknown ID).
	DeleteAppservice(ctx context.Context, id string) error

	// ClaimAppserviceLease makes owner the only pusher of the appservice
	// until now+ttl, if nobody else holds an unexpired lease; renewing
	// one's own lease always succeeds. It reports whether owner holds it.
	// An unknown appservice is ErrNotFound.
	ClaimAppserviceLease(ctx context.Context, id, owner string, now time.Time, ttl time.Duration) (bool, error)
	// ReleaseAppserviceLease gives the lease up if owner holds it, so
	// another instance takes over without waiting for it to expire.
	ReleaseAppserviceLease(ctx context.Context, id, owner string) error

	// PutAppserviceMember records a membership of one of the appservice's
	// users, unless a membership at a later position is already recorded.
	PutAppserviceMember(ctx context.Context, asID string, m AppserviceMember) error
	// AppserviceInRoom reports whether one of the appservice's users is
	// joined to or invited in the room.
	AppserviceInRoom(ctx context.Context, asID, roomID string) (bool, error)
	// EnqueueAppserviceEvent adds an event to the appservice's queue and,
	// in the same transaction, records member (when not nil) as
	// PutAppserviceMember does. It reports false, changing nothing else,
	// when the event was already queued (a redelivery). An unknown
	// appservice is ErrNotFound.
	EnqueueAppserviceEvent(ctx context.Context, asID, eventID string, member *AppserviceMember, now time.Time) (bool, error)
	// WaitingAppserviceEvents returns up to limit queued event IDs that
	// are in no transaction yet, in queue order.
	WaitingAppserviceEvents(ctx context.Context, asID string, limit int) ([]string, error)
	// CreateAppserviceTxn allocates the appservice's next transaction ID
	// (never reused, even across restarts), stores body under it and
	// takes the events out of the waiting queue, in one transaction.
	CreateAppserviceTxn(ctx context.Context, asID string, eventIDs []string, body json.RawMessage, now time.Time) (int64, error)
	// PendingAppserviceTxn returns the oldest unacknowledged transaction
	// (ErrNotFound when there is none).
	PendingAppserviceTxn(ctx context.Context, asID string) (*AppserviceTxn, error)
	// CompleteAppserviceTxn forgets an acknowledged transaction.
	CompleteAppserviceTxn(ctx context.Context, asID string, txnID int64) error
	// PruneAppserviceQueue forgets events sent before the given time. The
	// queue keeps sent events for a while so that a redelivery by the
	// event stream is recognised and not pushed twice.
	PruneAppserviceQueue(ctx context.Context, asID string, before time.Time) (int, error)
}
