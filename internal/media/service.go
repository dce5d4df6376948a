// Package media is the hub's Matrix content repository: clients (and,
// later, vendor bridges) upload files and download them by mxc:// URI.
//
// The Service does the work and offers it as Go methods (Upload, Create,
// UploadTo, Open) so an in-process bridge can store a PDF report without
// HTTP; Register mounts the Matrix endpoints over the same methods. A
// Store keeps content and metadata; DiskStore is the one implementation
// so far.
//
// Choices, and why:
//   - Downloads require an access token (Matrix v1.11 authenticated
//     media). The legacy unauthenticated download and thumbnail endpoints
//     are frozen, as the spec asks of servers since v1.12 and as Synapse
//     does by default for new media: every item here is newer than the
//     freeze, so they answer 404 M_NOT_FOUND. Clients only use the
//     authenticated endpoints if /versions advertises v1.11 or the
//     "org.matrix.msc3916.stable" unstable feature.
//   - Any authenticated user of the hub may download any local media
//     whose mxc URI they know (the spec's model). Linking media to the
//     room it was sent in (MSC3911) would narrow that; not done yet.
//   - Thumbnails are the original image, not a scaled copy (see
//     handleThumbnail).
//   - The size limit is enforced while streaming: nothing is held in
//     memory beyond a copy buffer, and an over-limit upload leaves
//     nothing behind.
//   - Filenames may name patients: they are stored (the spec requires
//     downloads to return them) but never logged.
package media

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// DefaultMaxUploadBytes is the upload limit when Config leaves it zero:
// 50 MiB, Synapse's default, which covers scanned reports and phone
// photos.
const DefaultMaxUploadBytes = 50 << 20

// PendingLifetime is how long an ID reserved by Create waits for its
// content, the spec's recommended 24 hours.
const PendingLifetime = 24 * time.Hour

// Errors of the Service's Go API, beyond the Store's ErrNotFound and
// ErrExists (content already uploaded).
var (
	// ErrTooLarge: the content exceeds Config.MaxUploadBytes.
	ErrTooLarge = errors.New("media: content too large")
	// ErrForbidden: uploading to an ID another user reserved.
	ErrForbidden = errors.New("media: not the uploader of this media ID")
	// ErrNotYetUploaded: the ID is reserved but its content has not
	// arrived within the wait.
	ErrNotYetUploaded = errors.New("media: not yet uploaded")
)

// Config of the Service.
type Config struct {
	// ServerName is the hub's Matrix server name, the authority of every
	// mxc:// URI it hands out; media of other servers is not served.
	ServerName string
	// MaxUploadBytes bounds one upload; 0 means DefaultMaxUploadBytes.
	MaxUploadBytes int64
}

// Service is the content repository.
type Service struct {
	st  Store
	cfg Config
	log *slog.Logger
	now func() time.Time
	// gate, when set, may refuse an upload before it is read (gate.go).
	gate UploadGate

	// uploaded is closed, and replaced, each time a reserved ID gets its
	// content, waking the downloads waiting for it on this instance (the
	// others find out by polling).
	mu       sync.Mutex
	uploaded chan struct{}
}

// New returns a Service over st; log may be nil.
func New(st Store, cfg Config, log *slog.Logger) *Service {
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, cfg: cfg, log: log, now: time.Now, uploaded: make(chan struct{})}
}

// MaxUploadBytes is the effective upload limit.
func (s *Service) MaxUploadBytes() int64 { return s.cfg.MaxUploadBytes }

// ContentURI is the mxc:// URI of a local media ID.
func (s *Service) ContentURI(mediaID string) id.ContentURI {
	return id.ContentURI{Homeserver: s.cfg.ServerName, FileID: mediaID}
}

// Upload is one piece of content to store.
type Upload struct {
	// Uploader is the Matrix user ID the content is recorded under.
	Uploader string
	// ContentType is the type the client claims; "" lets the content
	// decide (see decideContentType).
	ContentType string
	// Filename is the client's name for the file; the Service sanitises
	// it.
	Filename string
	// Body is read once, to its end or the size limit.
	Body io.Reader
}

// Upload stores new content under a fresh media ID.
func (s *Service) Upload(ctx context.Context, up Upload) (Metadata, error) {
	return s.put(ctx, newMediaID(), up)
}

// Create reserves a media ID whose content the same user uploads later
// with UploadTo (the spec's asynchronous upload, which lets a client send
// the event before the file).
func (s *Service) Create(ctx context.Context, uploader string) (Metadata, error) {
	now := s.now().UTC()
	m := Metadata{ID: newMediaID(), Uploader: uploader, CreatedAt: now, Pending: true, ExpiresAt: now.Add(PendingLifetime)}
	if err := s.st.SaveMetadata(ctx, m); err != nil {
		return Metadata{}, err
	}
	s.log.Info("media ID reserved", "media_id", m.ID, "uploader", uploader)
	return m, nil
}

// UploadTo stores the content of an ID reserved by Create. Only the user
// who reserved it may, once, before it expires.
func (s *Service) UploadTo(ctx context.Context, mediaID string, up Upload) (Metadata, error) {
	m, err := s.st.Metadata(ctx, mediaID)
	if err != nil {
		return Metadata{}, err
	}
	switch {
	case !m.Pending:
		return Metadata{}, ErrExists
	case m.Uploader != up.Uploader:
		return Metadata{}, ErrForbidden
	case s.now().After(m.ExpiresAt):
		return Metadata{}, ErrNotFound
	}
	m, err = s.put(ctx, mediaID, up)
	if err == nil {
		s.wake()
	}
	return m, err
}

// put streams up.Body into the store under mediaID, then commits its
// metadata. Content is written first: until the metadata says otherwise,
// the ID is unknown (or pending), so no reader sees partial content.
func (s *Service) put(ctx context.Context, mediaID string, up Upload) (Metadata, error) {
	body := &maxReader{r: up.Body, left: s.cfg.MaxUploadBytes + 1}
	// The first 512 bytes are what http.DetectContentType looks at; the
	// buffered reader hands them on to the store, and larger reads pass
	// it by.
	br := bufio.NewReaderSize(body, 512)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return Metadata{}, err
	}
	ct := decideContentType(up.ContentType, http.DetectContentType(head))

	size, sum, err := s.st.Put(ctx, mediaID, br)
	if err != nil {
		return Metadata{}, err
	}
	m := Metadata{
		ID: mediaID, Uploader: up.Uploader, ContentType: ct, Filename: sanitizeFilename(up.Filename),
		Size: size, SHA256: hex.EncodeToString(sum), CreatedAt: s.now().UTC(),
	}
	if err := s.st.SaveMetadata(ctx, m); err != nil {
		// Best effort: content without metadata is never served anyway.
		_ = s.st.Delete(context.WithoutCancel(ctx), mediaID)
		return Metadata{}, err
	}
	s.log.Info("media uploaded", "media_id", mediaID, "uploader", up.Uploader, "size", size)
	return m, nil
}

// Open returns a local media item and its content, which the caller
// closes. If the ID is reserved but empty, Open waits up to wait for the
// content, then returns ErrNotYetUploaded. Media of another server is
// ErrNotFound (the hub does not federate yet).
func (s *Service) Open(ctx context.Context, serverName, mediaID string, wait time.Duration) (Metadata, io.ReadSeekCloser, error) {
	if serverName != s.cfg.ServerName || !ValidID(mediaID) {
		return Metadata{}, nil, ErrNotFound
	}
	var timeout <-chan time.Time
	for {
		// Taken before reading, so an upload that completes in between
		// still wakes the wait below.
		woken := s.wakeChan()
		m, err := s.st.Metadata(ctx, mediaID)
		if err != nil {
			return Metadata{}, nil, err
		}
		if !m.Pending {
			f, err := s.st.Open(ctx, mediaID)
			if err != nil {
				return Metadata{}, nil, err
			}
			return m, f, nil
		}
		if s.now().After(m.ExpiresAt) {
			return Metadata{}, nil, ErrNotFound
		}
		if timeout == nil {
			if wait <= 0 {
				return Metadata{}, nil, ErrNotYetUploaded
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-woken:
		case <-time.After(pendingPoll):
		case <-timeout:
			return Metadata{}, nil, ErrNotYetUploaded
		case <-ctx.Done():
			return Metadata{}, nil, ctx.Err()
		}
	}
}

// pendingPoll is how often a wait for pending content rereads the
// metadata, to see uploads completed on another instance.
const pendingPoll = 250 * time.Millisecond

func (s *Service) wakeChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploaded
}

func (s *Service) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.uploaded)
	s.uploaded = make(chan struct{})
}

// newMediaID returns 26 random base32 characters (128 bits), lowercased.
// One letter case only, so IDs stay distinct on case-insensitive
// filesystems.
func newMediaID() string {
	return strings.ToLower(rand.Text())
}

// maxReader fails with ErrTooLarge as soon as more than the limit has
// been read, so the store aborts mid-stream instead of after storing.
type maxReader struct {
	r    io.Reader
	left int64 // the limit plus one: reading that last byte proves excess
}

func (m *maxReader) Read(p []byte) (int, error) {
	if m.left <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left <= 0 {
		return n, ErrTooLarge
	}
	return n, err
}
