package store

import (
	"context"
	"errors"
	"time"
)

// AuditEntry is one row of the audit trail: metadata about a decision or
// an accepted event, never message content. The audit package defines the
// actions, the decisions and the hash; the store only keeps the chain
// linear and stores what it is given.
type AuditEntry struct {
	// Seq is assigned by AppendAudit: 1, 2, 3… with no gap, across every
	// hub instance sharing the database.
	Seq int64
	// Time is when the decision was taken (UTC). The store keeps
	// milliseconds and truncates to them before hashing. It is not
	// guaranteed to grow with Seq: instances' clocks and batches differ.
	Time      time.Time
	Actor     string // Matrix user ID, "operator:<id>", "cli:<user>" or "hub"
	Action    string // e.g. "room.invite", see the audit package
	RoomID    string
	Target    string // user ID, idNat or operator ID the action is about
	EventID   string
	EventType string
	Decision  string // "allow" or "deny"
	Reason    string // a stable refusal code or short text, never content
	RequestID string
	Instance  string // the hub instance that recorded the entry
	// Source is AuditSourceStream for entries derived from the accepted
	// event stream (at most one per EventID, see AppendAudit), "" for
	// entries recorded where the decision was taken.
	Source string
	// Door is where the request entered ("client:<device>",
	// "bridge:<id>", "appservice:<id>", "admin:<user>", "cli", "hub"…,
	// see internal/door); "" for entries written before doors existed.
	Door string
	// PrevHash is the previous entry's Hash (the purge anchor's, or 32
	// zero bytes, for the first entry); Hash covers PrevHash and every
	// field above. Both are set by AppendAudit.
	PrevHash []byte
	Hash     []byte
}

// AuditSourceStream marks entries derived from the accepted event stream.
const AuditSourceStream = "stream"

// AuditHashFunc computes an entry's Hash. AppendAudit calls it with Seq,
// Time (truncated to milliseconds, UTC) and PrevHash already set. It must
// return 32 bytes.
type AuditHashFunc func(e *AuditEntry) []byte

// AuditLink names one point of the chain: a sequence number and the hash
// of the entry there.
type AuditLink struct {
	Seq  int64
	Hash []byte
}

// AuditChain is the stored state of the chain beside its rows.
type AuditChain struct {
	// Anchor is the last purged entry (Seq 0 and 32 zero bytes if nothing
	// was ever purged): the first stored entry links to it.
	Anchor AuditLink
	// Head is the last appended entry (equal to Anchor when the trail is
	// empty). Verify compares it with the last row, which catches a
	// deleted tail unless the head was rewritten too.
	Head AuditLink
}

// AuditQuery selects entries for ReadAudit. The zero value reads them all.
type AuditQuery struct {
	AfterSeq int64     // only entries with Seq > AfterSeq
	Since    time.Time // if set, only entries with Time >= Since
	Until    time.Time // if set, only entries with Time < Until
}

// AuditPurge describes one purge step.
type AuditPurge struct {
	Deleted int
	// Anchor is the new anchor: the last deleted entry.
	Anchor AuditLink
	// Entry is the audit.purge entry appended in the same transaction,
	// as stored (with Seq and hashes).
	Entry AuditEntry
}

// ErrAuditHash is returned by AppendAudit when the hash function does not
// return 32 bytes.
var ErrAuditHash = errors.New("store: audit hash must be 32 bytes")

// AuditStore persists the audit trail as one hash chain. Rows are never
// updated, and only rows behind the purge anchor are ever deleted; both
// dialects also refuse other updates and deletes with triggers, so a bug
// cannot rewrite history by accident.
type AuditStore interface {
	// AppendAudit appends entries, in order, in one transaction holding
	// the audit lock (a PostgreSQL advisory lock distinct from the stream
	// lock; SQLite's single writer), so every hub instance sharing the
	// database extends one linear chain. Under that lock it reads the
	// head, gives each entry the next Seq and its PrevHash, and sets Hash
	// with hash.
	//
	// An entry with Source AuditSourceStream and an EventID already
	// stored under that source (or earlier in the same call) is skipped
	// without breaking the chain: JetStream redelivers. The result holds
	// one entry per input, as stored; a skipped one has Seq 0.
	AppendAudit(ctx context.Context, entries []AuditEntry, hash AuditHashFunc) ([]AuditEntry, error)

	// ReadAudit calls fn for the entries q selects, in Seq order, from one
	// consistent snapshot that also gives the returned chain state. Rows
	// are streamed, not collected. The chain state is returned even when
	// fn stops the read with an error (which is returned wrapped).
	ReadAudit(ctx context.Context, q AuditQuery, fn func(AuditEntry) error) (AuditChain, error)

	// PurgeAudit deletes, in one transaction holding the audit lock, the
	// oldest entries: those before the first entry with Time >= before,
	// at most limit of them, so what remains is always a suffix of the
	// chain. It moves the anchor to the last deleted entry and appends
	// the entry record returns (given the deleted count and new anchor),
	// hashed with hash. When nothing is old enough it changes nothing and
	// returns a zero AuditPurge.
	PurgeAudit(ctx context.Context, before time.Time, limit int, record func(AuditPurge) AuditEntry, hash AuditHashFunc) (AuditPurge, error)
}

// AuditStreamEventIDs lists the event IDs AppendAudit must look up before
// linking entries: those of stream entries.
func AuditStreamEventIDs(entries []AuditEntry) []string {
	var ids []string
	for _, e := range entries {
		if e.Source == AuditSourceStream && e.EventID != "" {
			ids = append(ids, e.EventID)
		}
	}
	return ids
}

// LinkAudit is the part of AppendAudit both dialects share, run under the
// audit lock once the head and the already stored stream event IDs are
// known. It skips duplicates, normalises Time (UTC, milliseconds; now if
// zero), and links and hashes the rest onto head. out parallels entries
// (Seq 0 for a skipped duplicate); ins are the rows to insert, in order.
func LinkAudit(head AuditLink, entries []AuditEntry, stored map[string]bool, hash AuditHashFunc) (out, ins []AuditEntry, err error) {
	out = make([]AuditEntry, len(entries))
	seen := make(map[string]bool)
	prev := head
	now := time.Now()
	for i, e := range entries {
		if e.Source == AuditSourceStream && e.EventID != "" {
			if stored[e.EventID] || seen[e.EventID] {
				e.Seq, e.PrevHash, e.Hash = 0, nil, nil
				out[i] = e
				continue
			}
			seen[e.EventID] = true
		}
		if e.Time.IsZero() {
			e.Time = now
		}
		e.Time = e.Time.UTC().Truncate(time.Millisecond)
		e.Seq = prev.Seq + 1
		e.PrevHash = prev.Hash
		e.Hash = hash(&e)
		if len(e.Hash) != 32 {
			return nil, nil, ErrAuditHash
		}
		prev = AuditLink{Seq: e.Seq, Hash: e.Hash}
		out[i] = e
		ins = append(ins, e)
	}
	return out, ins, nil
}
