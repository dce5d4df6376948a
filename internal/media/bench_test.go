package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// BenchmarkUpload10MiB: one 10 MiB upload through HTTP (loopback), the
// handler, SHA-256 and the disk store, fsync included. MB/s is the
// throughput of one upload stream.
func BenchmarkUpload10MiB(b *testing.B) {
	s := startServer(b, 0)
	content := make([]byte, 10<<20)
	_, _ = rand.Read(content) // incompressible, like a scan or a photo
	b.SetBytes(int64(len(content)))
	b.ReportAllocs()
	for b.Loop() {
		r, _ := http.NewRequest("POST", s.URL+"/_matrix/media/v3/upload?filename=scan.pdf", bytes.NewReader(content))
		r.Header.Set("Authorization", "Bearer tok-alice")
		r.Header.Set("Content-Type", "application/pdf")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkDiskStorePut10MiB isolates the store: temporary file, hash,
// fsync, link.
func BenchmarkDiskStorePut10MiB(b *testing.B) {
	d, err := NewDiskStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	content := make([]byte, 10<<20)
	_, _ = rand.Read(content)
	b.SetBytes(int64(len(content)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, _, err := d.Put(context.Background(), fmt.Sprintf("bench%08d", i), bytes.NewReader(content)); err != nil {
			b.Fatal(err)
		}
	}
}
