package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrImportSuperseded is returned by a DirectoryImport whose generation was
// taken over by a later BeginDirectoryImport (two imports run at once, or
// one resumed after another started): only the newest import may commit.
var ErrImportSuperseded = errors.New("store: directory import superseded by a newer one")

// DirectoryStore persists the health directory as generations: an import
// writes a whole new generation beside the current one, in as many short
// transactions as it likes, and Commit switches to it in one transaction.
// Readers only ever see the current generation, so they get the old
// directory or the new one, never a mix of both.
type DirectoryStore interface {
	// BeginDirectoryImport starts a new generation. It discards whatever an
	// earlier import left unfinished (crash, abort that failed), and any
	// import still running loses its right to commit (ErrImportSuperseded).
	BeginDirectoryImport(ctx context.Context) (DirectoryImport, error)
	// DirectoryPractitioners streams the current generation in idNat order
	// from one consistent snapshot. An error from fn stops the read and is
	// returned wrapped.
	DirectoryPractitioners(ctx context.Context, fn func(DirectoryRecord) error) error
	// DirectoryStats describes the current generation; Generation is 0
	// before the first import.
	DirectoryStats(ctx context.Context) (DirectoryStats, error)
}

// DirectoryImport is one import in progress. It is not safe for concurrent
// use. After Commit or Abort it must not be used again, except that Abort
// after Commit is a no-op, so callers may defer Abort.
type DirectoryImport interface {
	// Add writes records into the new generation. An idNat already added
	// to this import is an error wrapping ErrExists.
	Add(ctx context.Context, recs []DirectoryRecord) error
	// Commit makes the new generation current. Practitioners of the
	// previous generation absent from the new one are carried over with
	// Active false, so "known but no longer registered" stays
	// distinguishable from "unknown"; inactivated counts those who were
	// active until now.
	Commit(ctx context.Context) (inactivated int, err error)
	// Abort discards the new generation; the current one is untouched.
	Abort(ctx context.Context) error
}

// DirectoryRecord is one practitioner as stored. The store does not
// interpret Professions and Activities (JSON arrays, written by the
// directory package).
type DirectoryRecord struct {
	IDNat       string
	RPPS        string
	Civility    string
	LastName    string
	FirstName   string
	Professions json.RawMessage
	Activities  json.RawMessage
	Active      bool
	// UpdatedAt is when an import wrote the record or, for a practitioner
	// carried over as inactive, when they were first found missing. Set by
	// the store; ignored by Add.
	UpdatedAt time.Time
}

// DirectoryStats describes the current directory generation.
type DirectoryStats struct {
	Generation int64
	Active     int
	Inactive   int
	ImportedAt time.Time // zero before the first import
}
