package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// files lists the regular files under dir (relative paths), so a test can
// say exactly what a store left on disk.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newDisk(t *testing.T) *DiskStore {
	t.Helper()
	d, err := NewDiskStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var errBoom = errors.New("connection reset")

// failingReader delivers n bytes, then fails.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errBoom
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

func TestDiskStoreRoundTrip(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	content := bytes.Repeat([]byte("compte rendu "), 100_000) // 1.3 MB, several copy buffers
	size, sum, err := d.Put(ctx, "abcdefgh", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(content)
	if size != int64(len(content)) || !bytes.Equal(sum, want[:]) {
		t.Fatalf("Put = %d, %x; want %d, %x", size, sum, len(content), want)
	}
	f, err := d.Open(ctx, "abcdefgh")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, content) {
		t.Fatal("content differs")
	}

	// Sharded path, owner-only permissions.
	p := filepath.Join(d.Dir(), "ab", "cd", "abcdefgh")
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("content mode = %v, want 0600", info.Mode().Perm())
	}
	for _, dir := range []string{filepath.Dir(p), filepath.Dir(filepath.Dir(p)), d.Dir() + "/tmp"} {
		if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, err %v; want 0700", dir, info.Mode().Perm(), err)
		}
	}

	// Media is immutable.
	if _, _, err := d.Put(ctx, "abcdefgh", strings.NewReader("other")); !errors.Is(err, ErrExists) {
		t.Fatalf("second Put: %v, want ErrExists", err)
	}

	if err := d.Delete(ctx, "abcdefgh"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(ctx, "abcdefgh"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Delete: %v", err)
	}
	if err := d.Delete(ctx, "abcdefgh"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if left := files(t, d.Dir()); len(left) != 0 {
		t.Fatalf("files left: %v", left)
	}
}

// TestDiskStoreAtomic: content becomes visible whole or not at all. A
// reader that fails part-way (a client whose connection drops) leaves no
// file, not even a temporary one; while an upload is in progress, the ID
// is not there.
func TestDiskStoreAtomic(t *testing.T) {
	ctx := context.Background()

	t.Run("failing reader", func(t *testing.T) {
		d := newDisk(t)
		_, _, err := d.Put(ctx, "halfwritten", &failingReader{n: 3 << 20})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put: %v, want the reader's error", err)
		}
		if _, err := d.Open(ctx, "halfwritten"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open: %v, want ErrNotFound", err)
		}
		if left := files(t, d.Dir()); len(left) != 0 {
			t.Fatalf("files left: %v", left)
		}
		// The ID is still free: a retry succeeds.
		if _, _, err := d.Put(ctx, "halfwritten", strings.NewReader("ok")); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		d := newDisk(t)
		cctx, cancel := context.WithCancel(ctx)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, _, err := d.Put(cctx, "cancelled", pr)
			done <- err
		}()
		if _, err := pw.Write(make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		cancel()
		go pw.Write(make([]byte, 1)) // unblocks the reader so it sees the cancel
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Put: %v, want context.Canceled", err)
		}
		pw.Close()
		if left := files(t, d.Dir()); len(left) != 0 {
			t.Fatalf("files left: %v", left)
		}
	})

	t.Run("invisible while writing", func(t *testing.T) {
		d := newDisk(t)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, _, err := d.Put(ctx, "inprogress", pr)
			done <- err
		}()
		if _, err := pw.Write(make([]byte, 2<<20)); err != nil {
			t.Fatal(err)
		}
		// Half written: the ID does not exist yet, only a temporary file.
		if _, err := d.Open(ctx, "inprogress"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open mid-write: %v, want ErrNotFound", err)
		}
		for _, f := range files(t, d.Dir()) {
			if !strings.HasPrefix(f, "tmp"+string(filepath.Separator)) {
				t.Fatalf("file outside tmp mid-write: %s", f)
			}
		}
		pw.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		f, err := d.Open(ctx, "inprogress")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, f)
		f.Close()
		if n != 2<<20 {
			t.Fatalf("size %d", n)
		}
		if left := files(t, filepath.Join(d.Dir(), "tmp")); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	})
}

// TestDiskStoreRacingPuts: of several Puts of one ID at once, exactly one
// wins and its content is the one stored (PUT /upload/{id} retried by a
// client, or racing on two instances).
func TestDiskStoreRacingPuts(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	sums := make([][]byte, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, sums[i], errs[i] = d.Put(ctx, "contended", bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 1<<20)))
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner == -1:
			winner = i
		case err == nil:
			t.Fatalf("two Puts succeeded: %d and %d", winner, i)
		case !errors.Is(err, ErrExists):
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	if winner == -1 {
		t.Fatal("no Put succeeded")
	}
	f, _ := d.Open(ctx, "contended")
	got, _ := io.ReadAll(f)
	f.Close()
	if sum := sha256.Sum256(got); !bytes.Equal(sum[:], sums[winner]) {
		t.Fatal("stored content is not the winner's")
	}
}

func TestDiskStoreMetadata(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	m := Metadata{
		ID: "abcdef", Uploader: "@810000000017:hub.test", ContentType: "application/pdf",
		Filename: "CR opératoire.pdf", Size: 42, SHA256: "00ff", CreatedAt: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC),
	}
	if err := d.SaveMetadata(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := d.Metadata(ctx, "abcdef")
	if err != nil || got != m {
		t.Fatalf("Metadata = %+v, %v; want %+v", got, err, m)
	}
	// Replacing (pending → complete) is atomic too, and leaves no temporary file.
	m.Size = 43
	if err := d.SaveMetadata(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Metadata(ctx, "abcdef"); got.Size != 43 {
		t.Fatalf("replaced metadata: %+v", got)
	}
	if left := files(t, filepath.Join(d.Dir(), "tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if info, err := os.Stat(filepath.Join(d.Dir(), "ab", "cd", "abcdef.json")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("sidecar mode %v, %v", info.Mode().Perm(), err)
	}
	// Another ID that maps to the same files on a case-insensitive
	// filesystem must not read them.
	if err := os.WriteFile(filepath.Join(d.Dir(), "ab", "cd", "abcdeF.json"), []byte(`{"media_id":"abcdef"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Metadata(ctx, "abcdeF"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("mismatched sidecar: %v, want ErrNotFound", err)
	}
	if _, err := d.Metadata(ctx, "unknown"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestDiskStoreInvalidIDs(t *testing.T) {
	d := newDisk(t)
	ctx := context.Background()
	for _, id := range []string{"", "..", "../../etc/passwd", "a/b", `a\b`, "a.json", "%2e%2e", "é", strings.Repeat("a", 256)} {
		if _, _, err := d.Put(ctx, id, strings.NewReader("x")); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Put(%q): %v, want ErrInvalidID", id, err)
		}
		if _, err := d.Open(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%q): %v, want ErrNotFound", id, err)
		}
		if _, err := d.Metadata(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Metadata(%q): %v, want ErrNotFound", id, err)
		}
		if err := d.SaveMetadata(ctx, Metadata{ID: id}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("SaveMetadata(%q): %v, want ErrInvalidID", id, err)
		}
	}
	// Short IDs are valid in Matrix and still get shards.
	if _, _, err := d.Put(ctx, "a", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Dir(), "a_", "__", "a")); err != nil {
		t.Fatal(err)
	}
	if left := files(t, d.Dir()); len(left) != 1 {
		t.Fatalf("files: %v", left)
	}
}

// TestDiskStoreSweepsStaleTemp: temporary files of uploads that crashed
// long ago are removed at start; recent ones (an upload running on
// another instance) are not.
func TestDiskStoreSweepsStaleTemp(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewDiskStore(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "tmp", "put-stale")
	fresh := filepath.Join(dir, "tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDiskStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
}
