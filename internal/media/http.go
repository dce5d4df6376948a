package media

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/httpapi"
	"github.com/eimis-hub/eimis/internal/httpjson"
)

// The one way the hub writes JSON answers and Matrix errors.
var (
	writeJSON = httpjson.Write
	writeErr  = httpjson.Error
)

// The content repository's Matrix errors.
var (
	mNotYetUploaded  = mautrix.RespError{ErrCode: "M_NOT_YET_UPLOADED", StatusCode: http.StatusGatewayTimeout}
	mCannotOverwrite = mautrix.RespError{ErrCode: "M_CANNOT_OVERWRITE_MEDIA", StatusCode: http.StatusConflict}
	mCannotThumbnail = mautrix.MUnknown.WithStatus(http.StatusBadRequest)
	mInvalidParam    = mautrix.MInvalidParam
	// mNotFound is the one answer for unknown, remote, expired and frozen
	// media alike, so it tells nothing about which IDs exist.
	mNotFound = mautrix.MNotFound.WithMessage("Media not found")
)

const (
	// defaultDownloadWait is the spec's default timeout_ms for content
	// not yet uploaded; maxDownloadWait caps what a client may ask.
	defaultDownloadWait = 20 * time.Second
	maxDownloadWait     = 60 * time.Second
)

// thumbnailNames are the filenames thumbnails are served under: not the
// original's name, which may name a patient.
var thumbnailNames = map[string]string{
	"image/jpeg": "thumbnail.jpg", "image/png": "thumbnail.png", "image/apng": "thumbnail.png",
	"image/gif": "thumbnail.gif", "image/webp": "thumbnail.webp",
}

// AuthFunc authenticates a request and returns the Matrix user ID making
// it. On failure it returns a mautrix.RespError (M_MISSING_TOKEN,
// M_UNKNOWN_TOKEN…), written to the client as it is; any other error is
// answered as an internal error.
type AuthFunc func(r *http.Request) (userID string, err error)

type authedHandler func(w http.ResponseWriter, r *http.Request, userID string)

// Register mounts the content repository's endpoints on mux: the Matrix
// v1.11+ authenticated ones under /_matrix/client/v1/media/, uploads
// under /_matrix/media/ (the spec has not moved them yet), and the legacy
// unauthenticated downloads, frozen (404).
func (s *Service) Register(mux *http.ServeMux, auth AuthFunc) {
	a := func(h authedHandler) http.HandlerFunc { return s.authed(auth, h) }

	for _, v := range []string{"v3", "r0"} {
		p := "/_matrix/media/" + v
		mux.HandleFunc("POST "+p+"/upload", a(s.handleUpload))
		mux.HandleFunc("GET "+p+"/config", a(s.handleConfig))
		mux.HandleFunc("GET "+p+"/preview_url", a(s.handlePreviewURL))
		mux.HandleFunc("GET "+p+"/download/{serverName}/{mediaId}", s.handleFrozen)
		mux.HandleFunc("GET "+p+"/download/{serverName}/{mediaId}/{fileName}", s.handleFrozen)
		mux.HandleFunc("GET "+p+"/thumbnail/{serverName}/{mediaId}", s.handleFrozen)
	}
	mux.HandleFunc("POST /_matrix/media/v1/create", a(s.handleCreate))
	mux.HandleFunc("PUT /_matrix/media/v3/upload/{serverName}/{mediaId}", a(s.handleUploadTo))

	const c = "/_matrix/client/v1/media"
	mux.HandleFunc("GET "+c+"/config", a(s.handleConfig))
	mux.HandleFunc("GET "+c+"/preview_url", a(s.handlePreviewURL))
	mux.HandleFunc("GET "+c+"/download/{serverName}/{mediaId}", a(s.handleDownload))
	mux.HandleFunc("GET "+c+"/download/{serverName}/{mediaId}/{fileName}", a(s.handleDownload))
	mux.HandleFunc("GET "+c+"/thumbnail/{serverName}/{mediaId}", a(s.handleThumbnail))
}

// authed runs h for authenticated requests only.
func (s *Service) authed(auth AuthFunc, h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, err := auth(r)
		if err != nil {
			httpapi.Refuse(s.log, w, r, err)
			return
		}
		h(w, r, user)
	}
}

func (s *Service) handleConfig(w http.ResponseWriter, _ *http.Request, _ string) {
	writeJSON(w, http.StatusOK, map[string]int64{"m.upload.size": s.cfg.MaxUploadBytes})
}

// handlePreviewURL answers every URL preview with the spec's empty
// preview. A preview makes the server fetch whatever address a message
// contains: that would let any user reach hosts on the hub's network
// (SSRF), and tell third parties which links practitioners exchange.
// Answering instead of 404 spares clients an error per link.
func (s *Service) handlePreviewURL(w http.ResponseWriter, _ *http.Request, _ string) {
	writeJSON(w, http.StatusOK, struct{}{})
}

// handleFrozen answers the deprecated unauthenticated download and
// thumbnail endpoints. The spec (v1.11, "freeze") lets servers refuse
// media uploaded after the freeze there with 404 M_NOT_FOUND, and Synapse
// does so by default; the hub froze before its first upload, so it
// refuses all, without looking the ID up (which would tell strangers
// which IDs exist).
func (s *Service) handleFrozen(w http.ResponseWriter, _ *http.Request) {
	writeErr(w, mNotFound)
}

func (s *Service) handleUpload(w http.ResponseWriter, r *http.Request, user string) {
	if !s.admit(w, r, user) {
		return
	}
	if r.ContentLength > s.cfg.MaxUploadBytes {
		// Refused before reading: with "Expect: 100-continue" the client
		// does not even send the body.
		s.tooLarge(w)
		return
	}
	m, err := s.Upload(r.Context(), s.uploadOf(r, user))
	if err != nil {
		s.uploadErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"content_uri": s.ContentURI(m.ID).String()})
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request, user string) {
	if !s.admit(w, r, user) {
		return
	}
	m, err := s.Create(r.Context(), user)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"content_uri":       s.ContentURI(m.ID).String(),
		"unused_expires_at": m.ExpiresAt.UnixMilli(),
	})
}

func (s *Service) handleUploadTo(w http.ResponseWriter, r *http.Request, user string) {
	if r.PathValue("serverName") != s.cfg.ServerName {
		writeErr(w, mNotFound)
		return
	}
	if !s.admit(w, r, user) {
		return
	}
	if r.ContentLength > s.cfg.MaxUploadBytes {
		s.tooLarge(w)
		return
	}
	if _, err := s.UploadTo(r.Context(), r.PathValue("mediaId"), s.uploadOf(r, user)); err != nil {
		s.uploadErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Service) uploadOf(r *http.Request, user string) Upload {
	return Upload{
		Uploader: user, ContentType: r.Header.Get("Content-Type"),
		Filename: r.URL.Query().Get("filename"), Body: r.Body,
	}
}

func (s *Service) uploadErr(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrTooLarge):
		s.tooLarge(w)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalidID):
		writeErr(w, mNotFound)
	case errors.Is(err, ErrExists):
		writeErr(w, mCannotOverwrite.WithMessage("Media already uploaded"))
	case errors.Is(err, ErrForbidden):
		writeErr(w, mautrix.MForbidden.WithMessage("This media ID was created by another user"))
	default:
		s.internal(w, r, err)
	}
}

func (s *Service) tooLarge(w http.ResponseWriter) {
	writeErr(w, mautrix.MTooLarge.WithMessage("Upload exceeds the maximum of %d bytes", s.cfg.MaxUploadBytes))
}

// open resolves a download or thumbnail request. When there is nothing
// to serve it writes the error answer itself and returns ok false;
// otherwise the caller closes f.
func (s *Service) open(w http.ResponseWriter, r *http.Request) (m Metadata, f io.ReadSeekCloser, ok bool) {
	wait := defaultDownloadWait
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms >= 0 {
			wait = min(time.Duration(ms)*time.Millisecond, maxDownloadWait)
		}
	}
	m, f, err := s.Open(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"), wait)
	switch {
	case err == nil:
		return m, f, true
	case errors.Is(err, ErrNotFound):
		writeErr(w, mNotFound)
	case errors.Is(err, ErrNotYetUploaded):
		writeErr(w, mNotYetUploaded.WithMessage("Media has not been uploaded yet"))
	default:
		s.internal(w, r, err)
	}
	return Metadata{}, nil, false
}

// serve writes the content with headers already set. ServeContent
// answers Range requests (seeking in a video, resuming a download) and
// conditional ones (the ETag is the content's SHA-256).
func serve(w http.ResponseWriter, r *http.Request, m Metadata, f io.ReadSeeker) {
	setSafetyHeaders(w.Header())
	if m.SHA256 != "" {
		w.Header().Set("ETag", `"`+m.SHA256+`"`)
	}
	http.ServeContent(w, r, "", m.CreatedAt, f)
}

func (s *Service) handleDownload(w http.ResponseWriter, r *http.Request, _ string) {
	m, f, ok := s.open(w, r)
	if !ok {
		return
	}
	defer f.Close()
	name := m.Filename
	if override := r.PathValue("fileName"); override != "" {
		name = sanitizeFilename(override)
	}
	w.Header().Set("Content-Type", m.ContentType)
	w.Header().Set("Content-Disposition", contentDisposition(disposition(m.ContentType), name))
	s.log.Debug("media served", "media_id", m.ID, "size", m.Size)
	serve(w, r, m, f)
}

// handleThumbnail serves the original image as its own thumbnail. The
// spec allows a thumbnail larger than asked ("the actual thumbnail may be
// larger"), so this is correct, only heavier on the network. Scaling
// needs golang.org/x/image (WebP decoding, a good resampler), a cache of
// generated sizes, and a pixel-count check before decoding (a 50 MiB PNG
// can claim 2 billion pixels); it is left for later. What cannot be
// shown as an image (PDF, SVG, HTML labelled as PNG) gets the spec's 400.
func (s *Service) handleThumbnail(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	for _, p := range []string{"width", "height"} {
		if n, err := strconv.Atoi(q.Get(p)); err != nil || n <= 0 {
			writeErr(w, mInvalidParam.WithMessage("%s must be a positive integer", p))
			return
		}
	}
	if m := q.Get("method"); m != "" && m != "crop" && m != "scale" {
		writeErr(w, mInvalidParam.WithMessage("method must be crop or scale"))
		return
	}
	m, f, ok := s.open(w, r)
	if !ok {
		return
	}
	defer f.Close()
	ct := baseType(m.ContentType)
	if !thumbnailTypes[ct] {
		writeErr(w, mCannotThumbnail.WithMessage("Cannot generate thumbnails for the requested content"))
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", contentDisposition("inline", thumbnailNames[ct]))
	serve(w, r, m, f)
}

// internal answers an internal error, logged by class only, with the
// media ID: the URL may carry a filename.
func (s *Service) internal(w http.ResponseWriter, r *http.Request, err error) {
	mediaID := r.PathValue("mediaId")
	if !ValidID(mediaID) {
		mediaID = ""
	}
	httpapi.Internal(s.log, w, r, err, "media_id", mediaID)
}
