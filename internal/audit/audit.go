// Package audit keeps the hub's tamper-evident audit trail: who did what,
// when, in which room, to whom, whether it was allowed and why not. It
// records metadata only: never a message body, never event content.
//
// # Recording
//
// A Trail records entries. Record blocks until its entry is committed,
// but concurrent calls share transactions (a group commit: one writer
// goroutine takes whatever has queued while the previous transaction ran),
// so a busy hub pays one transaction per batch, not per entry.
// ConsumeEvents also records every accepted event from the NATS event
// stream (joins, invites, kicks, sends, redactions…); those entries carry
// Source "stream" and are stored at most once per event ID, whatever
// JetStream redelivers.
//
// # The chain
//
// Entries form one hash chain in Seq order, across every hub instance
// sharing the database: the store assigns Seq (1, 2, 3… with no gap) and
// computes the hashes inside the write transaction, under a lock of its
// own. Each entry's Hash is SHA-256 over this byte string (version 1):
//
//	"eimis-audit-v1"                 14 bytes of ASCII, the version tag
//	prev_hash                        32 bytes
//	seq                              8 bytes, big-endian
//	time                             8 bytes, big-endian signed Unix milliseconds (UTC)
//	actor, action, room_id, target, event_id, event_type,
//	decision, reason, request_id, instance, source
//	                                 each: its length in bytes as 4 bytes
//	                                 big-endian, then its UTF-8 bytes
//	door                             only when not empty, encoded the same
//	                                 way (entries from before doors were
//	                                 recorded keep their hash)
//
// prev_hash is the previous entry's hash; for the very first entry it is
// 32 zero bytes, and after a purge the first remaining entry's prev_hash is
// the hash of the last purged entry (the anchor). Integers are fixed-size
// and strings length-prefixed, so no two different entries share an
// encoding. A future version changes the tag. Export writes every field
// the hash covers (hashes in hex), so an auditor can recompute the chain
// from an export with nothing but this description.
//
// # What verification proves, and what it does not
//
// Verify recomputes every hash and link. A changed entry breaks its own
// hash; a deleted, inserted or reordered entry breaks a link or leaves a
// gap in Seq; a deleted tail no longer matches the head the store records
// beside the rows. But the chain carries no secret: someone who can write
// the database can delete the tail and rewrite the head, or recompute
// every hash after a change. Only a checkpoint kept outside the database
// catches that: note the head Verify prints (seq and hash), or keep
// exports elsewhere, and give the checkpoint back to Verify later. The
// database triggers that refuse updates and early deletes of audit rows
// stop mistakes, not someone who can drop them.
//
// # Retention
//
// Purge deletes the oldest entries but keeps the rest verifiable: in the
// same transaction it moves the anchor to the last deleted entry and
// appends an audit.purge entry that names the count, the anchor's seq and
// its hash, so the anchor itself is covered by the chain.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eimis-hub/eimis/internal/store"
)

// Entry is one audit entry. See store.AuditEntry for the fields; Seq,
// PrevHash and Hash are set when it is stored.
type Entry = store.AuditEntry

// Link names one point of the chain (a seq and the hash there). Verify
// takes links noted earlier as checkpoints.
type Link = store.AuditLink

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Source of the entries ConsumeEvents records.
const SourceStream = store.AuditSourceStream

// Actions. The trail accepts any non-empty action; these are the ones the
// hub records, so that queries over the trail can rely on their spelling.
const (
	ActionAccountCreate = "account.create"
	ActionLogin         = "login"
	ActionLoginSSO      = "login.sso"
	ActionLogout        = "logout"
	ActionProfileUpdate = "profile.update"

	ActionRoomCreate = "room.create"
	ActionRoomInvite = "room.invite"
	ActionRoomJoin   = "room.join"
	ActionRoomLeave  = "room.leave"
	ActionRoomKick   = "room.kick"
	ActionRoomBan    = "room.ban"
	ActionRoomUnban  = "room.unban"
	ActionRoomKnock  = "room.knock"

	ActionEventSend   = "event.send"
	ActionEventRedact = "event.redact"

	ActionDirectoryImport     = "directory.import"
	ActionDirectorySync       = "directory.sync"
	ActionDirectoryDeactivate = "directory.deactivate"

	ActionOperatorAdd        = "operator.add"
	ActionOperatorSuspend    = "operator.suspend"
	ActionOperatorRevoke     = "operator.revoke"
	ActionOperatorReactivate = "operator.reactivate"

	// Bindings: an app acting for a practitioner (internal/consent). The
	// actor is the door (bridge:<id>, appservice:<id>) for what the app
	// did, the practitioner or operator for a revocation; the target is
	// the practitioner.
	ActionBindingLinkCode = "binding.link_code" // a practitioner obtained a link code
	ActionBindingBind     = "binding.bind"      // an app bound a practitioner (or was refused)
	ActionBindingUnbind   = "binding.unbind"    // the app stopped acting for them
	ActionBindingRevoke   = "binding.revoke"    // the practitioner or an operator revoked it

	// ActionAdminPrefix starts the actions of the admin API, one per
	// endpoint: "admin." + what it does.
	ActionAdminPrefix = "admin."

	// ActionAuditPurge is recorded by Purge itself; Verify relies on it.
	ActionAuditPurge = "audit.purge"
)

// ActorHub is the actor of what the hub does on its own (retention).
const ActorHub = "hub"

// ErrInvalid is wrapped by Record's error for an entry it refuses.
var ErrInvalid = errors.New("audit: invalid entry")

// maxField bounds every text field, in bytes. Entries are metadata: an
// identifier or a reason code is far shorter, and a long value is more
// likely content that slipped in than anything an auditor needs.
const maxField = 1024

const hashVersion = "eimis-audit-v1"

// Hash computes an entry's hash as the package documentation describes,
// from its PrevHash, Seq, Time and text fields (Hash itself is ignored).
func Hash(e *Entry) []byte {
	n := len(hashVersion) + len(e.PrevHash) + 16 + 4 + len(e.Door)
	fields := textFields(e)
	for _, f := range fields {
		n += 4 + len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, hashVersion...)
	b = append(b, e.PrevHash...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli()))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	if e.Door != "" {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.Door)))
		b = append(b, e.Door...)
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// textFields lists the hashed strings in their fixed order.
func textFields(e *Entry) [11]string {
	return [11]string{e.Actor, e.Action, e.RoomID, e.Target, e.EventID, e.EventType,
		e.Decision, e.Reason, e.RequestID, e.Instance, e.Source}
}

// normalise checks what only a programming error gets wrong (refusing the
// entry) and repairs what a client could send (keeping the entry): text is
// made valid UTF-8 without NUL, which PostgreSQL would refuse for the
// whole batch, and cut to maxField bytes.
func normalise(e *Entry) error {
	if e.Action == "" {
		return fmt.Errorf("%w: action is required", ErrInvalid)
	}
	if e.Decision != Allow && e.Decision != Deny {
		return fmt.Errorf("%w: %s: decision must be %q or %q, not %q", ErrInvalid, e.Action, Allow, Deny, e.Decision)
	}
	for _, f := range []*string{&e.Actor, &e.Action, &e.RoomID, &e.Target, &e.EventID, &e.EventType,
		&e.Reason, &e.RequestID, &e.Instance, &e.Source, &e.Door} {
		*f = cleanText(*f)
	}
	e.Seq, e.PrevHash, e.Hash = 0, nil, nil
	return nil
}

func cleanText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) && len(s) <= maxField {
		return s
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= maxField {
		return s
	}
	const mark = "…"
	cut := maxField - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// msTime is how times are shown in exports and messages: RFC 3339 in UTC
// with milliseconds, the precision the chain keeps.
const msTime = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(msTime) }
