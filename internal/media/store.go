package media

import (
	"context"
	"errors"
	"io"
	"regexp"
	"time"
)

// Errors a Store returns; the service maps them to Matrix errors.
var (
	// ErrNotFound: no such media (or not yet visible).
	ErrNotFound = errors.New("media: not found")
	// ErrExists: content for this ID is already stored. Media is
	// immutable, so a second Put for one ID is refused rather than
	// replacing what clients may already have downloaded.
	ErrExists = errors.New("media: already exists")
	// ErrInvalidID: the ID has characters a media ID may not have.
	ErrInvalidID = errors.New("media: invalid media ID")
)

// Store keeps media content and its metadata. It is defined here, by its
// consumer, so that an object store (S3-compatible, for instances that do
// not share a disk) can be a second implementation without touching the
// hub's database interface.
//
// Metadata lives in the Store, next to the content, rather than in the
// hub's SQL store: adding a table means changing store.Store, both SQL
// dialects and their migrations, which other work is changing too, and
// nothing yet queries media metadata across items. When quotas or
// retention need "all media of user X" or "media older than T", the
// metadata methods below are the seam to move it into SQL.
type Store interface {
	// Put stores the content for id, streaming it (constant memory), and
	// returns its size and SHA-256. The content becomes visible all at
	// once or not at all: if r fails part-way, nothing is left behind.
	// Put returns ErrExists if id already has content.
	Put(ctx context.Context, id string, r io.Reader) (size int64, sha256 []byte, err error)
	// Open returns the content of id, or ErrNotFound.
	Open(ctx context.Context, id string) (io.ReadSeekCloser, error)
	// Delete removes the metadata and content of id; ErrNotFound if
	// neither existed.
	Delete(ctx context.Context, id string) error
	// SaveMetadata writes (or replaces) the metadata of m.ID atomically.
	SaveMetadata(ctx context.Context, m Metadata) error
	// Metadata returns the metadata of id, or ErrNotFound.
	Metadata(ctx context.Context, id string) (Metadata, error)
}

// Metadata describes one media item. Metadata without Pending is the
// commit point of an upload: content without metadata (left by a crash
// between the two writes) is never served.
type Metadata struct {
	ID       string `json:"media_id"`
	Uploader string `json:"uploader"`
	// ContentType is what downloads are served as (see decideContentType).
	ContentType string `json:"content_type"`
	// Filename is the sanitised name given at upload; it may name a
	// patient, so it is never logged.
	Filename string `json:"filename,omitempty"`
	Size     int64  `json:"size"`
	// SHA256 is the hex digest of the content (also the download ETag).
	SHA256    string    `json:"sha256,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Pending marks an ID reserved by POST /_matrix/media/v1/create whose
	// content has not been uploaded; it expires at ExpiresAt.
	Pending   bool      `json:"pending,omitempty"`
	ExpiresAt time.Time `json:"unused_expires_at,omitzero"`
}

// validID is the spec's media ID alphabet (alphanumerics, '_' and '-').
// Checking it before any path is built is what keeps a media ID from
// naming a file outside the store (the spec's directory traversal note).
var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// ValidID reports whether id may be a media ID.
func ValidID(id string) bool { return validID.MatchString(id) }
