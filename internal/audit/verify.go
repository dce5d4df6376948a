package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/eimis-hub/eimis/internal/store"
)

// Reader reads the chain; store.Store implements it.
type Reader interface {
	ReadAudit(ctx context.Context, q store.AuditQuery, fn func(store.AuditEntry) error) (store.AuditChain, error)
}

// ErrBroken is wrapped by the error Verify returns for a broken chain.
var ErrBroken = errors.New("audit: chain broken")

// BreakKind says what is wrong at a break.
type BreakKind string

const (
	// BreakChanged: the entry's hash does not match its content; the
	// entry was changed.
	BreakChanged BreakKind = "changed"
	// BreakLink: the entry's prev_hash is not the previous entry's hash;
	// an entry before it was changed, deleted, inserted or moved.
	BreakLink BreakKind = "link"
	// BreakMissing: seqs are missing; entries were deleted.
	BreakMissing BreakKind = "missing"
	// BreakHead: the last entry is not the head the store records; the
	// tail was deleted, or entries were added behind the hub's back.
	BreakHead BreakKind = "head"
	// BreakAnchor: the purge anchor disagrees with the entries or with
	// the last audit.purge entry.
	BreakAnchor BreakKind = "anchor"
	// BreakCheckpoint: an entry differs from a checkpoint given to Verify,
	// or the checkpoint's entry no longer exists.
	BreakCheckpoint BreakKind = "checkpoint"
)

// Break is the first place the chain does not hold.
type Break struct {
	Seq    int64
	Kind   BreakKind
	Detail string
}

func (b *Break) Error() string { return fmt.Sprintf("broken at seq %d: %s", b.Seq, b.Detail) }

// Unwrap makes a *Break match ErrBroken.
func (b *Break) Unwrap() error { return ErrBroken }

// Result is what Verify checked.
type Result struct {
	Checked  int64 // entries read
	FirstSeq int64 // 0 when there are none
	LastSeq  int64
	// Anchor is where the stored chain starts: the last purged entry, or
	// seq 0 and zero bytes if nothing was ever purged.
	Anchor Link
	// Head is the last entry's seq and hash (the anchor's when there are
	// no entries). Kept outside the database, it is a checkpoint to give
	// Verify later: only that catches a tail deleted along with the head
	// record.
	Head Link
	// Unchecked counts checkpoints behind the anchor: their entries were
	// purged, so nothing is left to compare them with.
	Unchecked int
	Break     *Break // nil when the chain holds
}

var errStop = errors.New("stop")

// Verify reads the whole chain in seq order, in constant memory, and
// checks every hash and every link, the anchor and the head, and the
// given checkpoints (seq and hash noted earlier, for instance from a
// previous Verify's Result.Head). A broken chain returns an error wrapping
// ErrBroken (a *Break, also in Result.Break) for the first break in seq
// order; other errors mean the chain could not be read.
func Verify(ctx context.Context, st Reader, checkpoints ...Link) (Result, error) {
	var (
		res       Result
		firstPrev []byte
		prevHash  []byte
		lastPurge *purgeRecord
		brk       *Break
		first     = true
	)
	want := make(map[int64][]byte, len(checkpoints))
	for _, c := range checkpoints {
		want[c.Seq] = c.Hash
	}
	chain, err := st.ReadAudit(ctx, store.AuditQuery{}, func(e Entry) error {
		if first {
			first = false
			res.FirstSeq, firstPrev = e.Seq, e.PrevHash
		} else {
			switch {
			case e.Seq != res.LastSeq+1:
				brk = missing(res.LastSeq+1, e.Seq-1, "")
				return errStop
			case !bytes.Equal(e.PrevHash, prevHash):
				brk = &Break{Seq: e.Seq, Kind: BreakLink, Detail: fmt.Sprintf(
					"prev_hash does not match the hash of entry %d: an entry was changed, deleted, inserted or moved", res.LastSeq)}
				return errStop
			}
		}
		if !bytes.Equal(Hash(&e), e.Hash) {
			brk = &Break{Seq: e.Seq, Kind: BreakChanged, Detail: "hash does not match the entry's content: the entry was changed"}
			return errStop
		}
		if h, ok := want[e.Seq]; ok && !bytes.Equal(h, e.Hash) {
			brk = &Break{Seq: e.Seq, Kind: BreakCheckpoint, Detail: fmt.Sprintf(
				"hash %x differs from the checkpoint's %x: the chain was rewritten from here or earlier", e.Hash, h)}
			return errStop
		}
		if e.Action == ActionAuditPurge && e.Decision == Allow {
			r := parsePurge(e)
			lastPurge = &r
		}
		res.Checked++
		res.LastSeq, prevHash = e.Seq, e.Hash
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return res, fmt.Errorf("audit: verify: %w", err)
	}
	res.Anchor = chain.Anchor
	res.Head = Link{Seq: res.LastSeq, Hash: prevHash}
	if res.Checked == 0 {
		res.Head = chain.Anchor
	}
	// The first entry's link needs the anchor, which comes with the end of
	// the read; being the lowest seq, a break there comes first.
	if b := checkStart(!first, res.FirstSeq, firstPrev, chain.Anchor); b != nil {
		brk = b
	}
	if brk == nil {
		brk = checkEnd(res, chain)
	}
	if brk == nil {
		brk = checkAnchor(chain.Anchor, lastPurge)
	}
	if brk == nil {
		brk = checkCheckpoints(&res, checkpoints, chain.Anchor)
	}
	if brk != nil {
		res.Break = brk
		return res, brk
	}
	return res, nil
}

func missing(from, to int64, why string) *Break {
	what := fmt.Sprintf("entry %d is missing", from)
	if to > from {
		what = fmt.Sprintf("entries %d to %d are missing", from, to)
	}
	if why == "" {
		why = "deleted"
	}
	return &Break{Seq: from, Kind: BreakMissing, Detail: what + " (" + why + ")"}
}

func checkStart(seen bool, firstSeq int64, firstPrev []byte, anchor Link) *Break {
	if !seen {
		return nil
	}
	switch {
	case firstSeq > anchor.Seq+1:
		return missing(anchor.Seq+1, firstSeq-1, "deleted at the start of the chain")
	case firstSeq <= anchor.Seq:
		return &Break{Seq: firstSeq, Kind: BreakAnchor, Detail: fmt.Sprintf(
			"entry %d is still stored behind the purge anchor (seq %d): the anchor was moved", firstSeq, anchor.Seq)}
	case !bytes.Equal(firstPrev, anchor.Hash):
		what := "the hash of the purge anchor (seq " + strconv.FormatInt(anchor.Seq, 10) + ")"
		if anchor.Seq == 0 {
			what = "the zero hash that starts the chain"
		}
		return &Break{Seq: firstSeq, Kind: BreakLink, Detail: "prev_hash is not " + what + ": the anchor or the entry was changed"}
	}
	return nil
}

func checkEnd(res Result, chain store.AuditChain) *Break {
	last := res.Head
	switch {
	case last.Seq < chain.Head.Seq:
		return missing(last.Seq+1, chain.Head.Seq, fmt.Sprintf("the chain's recorded head is seq %d: the last entries were deleted", chain.Head.Seq))
	case last.Seq > chain.Head.Seq:
		return &Break{Seq: chain.Head.Seq + 1, Kind: BreakHead, Detail: fmt.Sprintf(
			"entries after the recorded head (seq %d) were not appended by the hub", chain.Head.Seq)}
	case !bytes.Equal(last.Hash, chain.Head.Hash):
		return &Break{Seq: last.Seq, Kind: BreakHead, Detail: "hash differs from the chain's recorded head: the tail was replaced"}
	}
	return nil
}

// checkAnchor holds the anchor to the last purge entry: the chain covers
// that entry, so moving the anchor (to hide deleted entries at the start)
// shows even though the anchor row itself is not hashed.
func checkAnchor(anchor Link, last *purgeRecord) *Break {
	switch {
	case anchor.Seq == 0 && last == nil:
		return nil
	case last == nil:
		return &Break{Seq: anchor.Seq + 1, Kind: BreakAnchor, Detail: fmt.Sprintf(
			"the purge anchor is seq %d but no audit.purge entry records a purge", anchor.Seq)}
	case last.err != nil:
		return &Break{Seq: last.seq, Kind: BreakAnchor, Detail: "audit.purge entry unreadable: " + last.err.Error()}
	case last.anchor.Seq != anchor.Seq || !bytes.Equal(last.anchor.Hash, anchor.Hash):
		return &Break{Seq: anchor.Seq + 1, Kind: BreakAnchor, Detail: fmt.Sprintf(
			"the purge anchor (seq %d) is not the one the last audit.purge entry (seq %d) recorded (seq %d): the anchor was moved",
			anchor.Seq, last.seq, last.anchor.Seq)}
	}
	return nil
}

func checkCheckpoints(res *Result, checkpoints []Link, anchor Link) *Break {
	for _, c := range checkpoints {
		switch {
		case c.Seq < anchor.Seq:
			res.Unchecked++
		case c.Seq == anchor.Seq:
			if !bytes.Equal(c.Hash, anchor.Hash) {
				return &Break{Seq: c.Seq, Kind: BreakCheckpoint, Detail: "the purge anchor's hash differs from the checkpoint"}
			}
		case c.Seq > res.Head.Seq:
			return missing(res.Head.Seq+1, c.Seq, fmt.Sprintf("a checkpoint names seq %d: the tail was deleted", c.Seq))
		}
	}
	return nil
}

// purgeRecord is what an audit.purge entry's Reason says.
type purgeRecord struct {
	seq     int64 // the audit.purge entry's own seq
	deleted int
	anchor  Link
	err     error
}

// purgeReason is the Reason of an audit.purge entry. Verify parses it
// back, so its shape is part of the format.
func purgeReason(p store.AuditPurge) string {
	return fmt.Sprintf("deleted=%d through_seq=%d anchor=%x", p.Deleted, p.Anchor.Seq, p.Anchor.Hash)
}

func parsePurge(e Entry) purgeRecord {
	r := purgeRecord{seq: e.Seq}
	var seen int
	for _, f := range strings.Fields(e.Reason) {
		k, v, _ := strings.Cut(f, "=")
		var err error
		switch k {
		case "deleted":
			r.deleted, err = strconv.Atoi(v)
		case "through_seq":
			r.anchor.Seq, err = strconv.ParseInt(v, 10, 64)
		case "anchor":
			r.anchor.Hash, err = hex.DecodeString(v)
		default:
			continue
		}
		if err != nil {
			r.err = fmt.Errorf("%s: %w", k, err)
			return r
		}
		seen++
	}
	if seen != 3 {
		r.err = fmt.Errorf("reason %q lacks deleted=, through_seq= or anchor=", e.Reason)
	}
	return r
}
