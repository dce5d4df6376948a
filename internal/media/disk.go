package media

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DiskStore keeps media under one directory:
//
//	<dir>/tmp/            writes in progress (same filesystem, so a rename
//	                      or link into place is atomic)
//	<dir>/ab/cd/<id>      content, for an ID starting "abcd"
//	<dir>/ab/cd/<id>.json its metadata (the sidecar; see Store for why)
//
// Two levels of two-character shards keep directories small (about a
// hundred entries each at a hundred million items with base32 IDs).
// Files are 0600 and directories 0700: media are health documents.
//
// Several hub instances may share one DiskStore directory (NFS or another
// shared volume): every write is a create-then-link or create-then-rename,
// which those filesystems make atomic.
type DiskStore struct {
	dir string
	tmp string
}

// staleTemp is the age after which a temporary file is taken for the
// leftover of a crashed upload. A live upload writes its temporary file
// continuously, so only one stalled for this long is removed.
const staleTemp = time.Hour

// copyBufSize is the buffer of one upload's copy to disk. 256 KiB makes
// a 50 MiB upload 200 write calls instead of 1,600 with io.Copy's 32 KiB.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// NewDiskStore opens (creating if needed) a store under dir and removes
// temporary files left by uploads that crashed more than an hour ago.
func NewDiskStore(dir string) (*DiskStore, error) {
	if dir == "" {
		return nil, errors.New("media: empty store directory")
	}
	d := &DiskStore{dir: dir, tmp: filepath.Join(dir, "tmp")}
	if err := os.MkdirAll(d.tmp, 0o700); err != nil {
		return nil, fmt.Errorf("media: create store directory: %w", err)
	}
	entries, err := os.ReadDir(d.tmp)
	if err != nil {
		return nil, fmt.Errorf("media: read temporary directory: %w", err)
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(d.tmp, e.Name()))
		}
	}
	return d, nil
}

// Dir is the store's root directory.
func (d *DiskStore) Dir() string { return d.dir }

// path is where id's content lives; id must be valid (checked by callers
// before any path is built).
func (d *DiskStore) path(id string) string {
	s := id + "____" // IDs shorter than four characters still get two shards
	return filepath.Join(d.dir, s[0:2], s[2:4], id)
}

// Put streams r to a temporary file, fsyncs it, then hard-links it into
// place. A link, unlike a rename, fails if the target exists, so two
// concurrent Puts for one ID (two PUT /upload/{id} racing, possibly on two
// instances) cannot both succeed, and stored content is never replaced.
func (d *DiskStore) Put(ctx context.Context, id string, r io.Reader) (size int64, sum []byte, err error) {
	if !ValidID(id) {
		return 0, nil, ErrInvalidID
	}
	final := d.path(id)
	// Not a guarantee (the link below is), but it spares uploading a body
	// that is bound to be refused.
	if _, err := os.Lstat(final); err == nil {
		return 0, nil, ErrExists
	}
	f, err := os.CreateTemp(d.tmp, "put-*")
	if err != nil {
		return 0, nil, fmt.Errorf("media: create temporary file: %w", err)
	}
	tmpName := f.Name()
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		// Whether the link succeeded or not, the temporary name goes.
		_ = os.Remove(tmpName)
	}()

	h := sha256.New()
	bp := copyBufs.Get().(*[]byte)
	size, err = io.CopyBuffer(io.MultiWriter(f, h), ctxReader{ctx, r}, *bp)
	copyBufs.Put(bp)
	if err != nil {
		return 0, nil, err // the reader's error, such as ErrTooLarge, unwrapped
	}
	if err := f.Sync(); err != nil {
		return 0, nil, fmt.Errorf("media: sync: %w", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return 0, nil, fmt.Errorf("media: close: %w", err)
	}
	if err := d.ensureShard(filepath.Dir(final)); err != nil {
		return 0, nil, err
	}
	if err := os.Link(tmpName, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return 0, nil, ErrExists
		}
		return 0, nil, fmt.Errorf("media: link into place: %w", err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return 0, nil, err
	}
	return size, h.Sum(nil), nil
}

// Open opens id's content.
func (d *DiskStore) Open(_ context.Context, id string) (io.ReadSeekCloser, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	f, err := os.Open(d.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("media: open: %w", err)
	}
	return f, nil
}

// Delete removes the metadata first, so the item stops being served
// before its content goes.
func (d *DiskStore) Delete(_ context.Context, id string) error {
	if !ValidID(id) {
		return ErrNotFound
	}
	p := d.path(id)
	errMeta := os.Remove(p + ".json")
	errBlob := os.Remove(p)
	if errors.Is(errMeta, fs.ErrNotExist) && errors.Is(errBlob, fs.ErrNotExist) {
		return ErrNotFound
	}
	for _, err := range []error{errMeta, errBlob} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("media: delete: %w", err)
		}
	}
	return syncDir(filepath.Dir(p))
}

// SaveMetadata writes the sidecar through a temporary file and a rename,
// so a reader sees the old metadata or the new, never half of it.
func (d *DiskStore) SaveMetadata(_ context.Context, m Metadata) error {
	if !ValidID(m.ID) {
		return ErrInvalidID
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("media: encode metadata: %w", err)
	}
	final := d.path(m.ID) + ".json"
	if err := d.ensureShard(filepath.Dir(final)); err != nil {
		return err
	}
	f, err := os.CreateTemp(d.tmp, "meta-*")
	if err != nil {
		return fmt.Errorf("media: create temporary file: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), final)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("media: write metadata: %w", err)
	}
	return syncDir(filepath.Dir(final))
}

// Metadata reads id's sidecar. The ID recorded inside must equal id
// exactly: on a case-insensitive filesystem "ABC" would otherwise open
// the files of "abc".
func (d *DiskStore) Metadata(_ context.Context, id string) (Metadata, error) {
	if !ValidID(id) {
		return Metadata{}, ErrNotFound
	}
	data, err := os.ReadFile(d.path(id) + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return Metadata{}, ErrNotFound
	} else if err != nil {
		return Metadata{}, fmt.Errorf("media: read metadata: %w", err)
	}
	var m Metadata
	if err := json.Unmarshal(data, &m); err != nil {
		return Metadata{}, fmt.Errorf("media: decode metadata of %s: %w", id, err)
	}
	if m.ID != id {
		return Metadata{}, ErrNotFound
	}
	return m, nil
}

// ensureShard creates a shard directory (<dir>/ab/cd) if it is missing,
// and fsyncs the parents of what it created: a file fsynced into a
// directory whose own entry was never made durable can vanish with it.
func (d *DiskStore) ensureShard(shard string) error {
	if _, err := os.Stat(shard); err == nil {
		return nil
	}
	if err := os.MkdirAll(shard, 0o700); err != nil {
		return fmt.Errorf("media: create shard directory: %w", err)
	}
	if err := syncDir(filepath.Dir(shard)); err != nil {
		return err
	}
	return syncDir(d.dir)
}

// syncDir makes a link, rename or removal in dir durable: without it a
// power loss can forget a file whose content was fsynced.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("media: sync directory: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("media: sync directory: %w", err)
	}
	return nil
}

// ctxReader stops a copy when the request is abandoned, even if the
// underlying reader would keep delivering.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
