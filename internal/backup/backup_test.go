package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/backup"
	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/signingkey"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestBackupRestore backs up a running hub that has acknowledged messages,
// restores the backup into an empty data directory and database, starts a
// hub there and reads every acknowledged message back, on both dialects.
func TestBackupRestore(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var db1, db2 string
			if dialect == "postgres" {
				db1, db2 = pgtest.URL(t), pgtest.URL(t)
			}
			h1 := hubtest.Start(t, hubtest.Options{Dialect: dialect, DatabaseURL: db1})
			alice := h1.NewUser(t, "alice")
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Staff room"})
			if err != nil {
				t.Fatal(err)
			}
			var acked []id.EventID
			for i := range 25 {
				resp, err := alice.SendText(ctx, room.RoomID, fmt.Sprintf("message %d", i))
				if err != nil {
					t.Fatal(err)
				}
				acked = append(acked, resp.EventID)
			}
			mediaFile := filepath.Join(h1.Config.MediaDir, "ab", "cdef")
			if err := os.MkdirAll(filepath.Dir(mediaFile), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(mediaFile, []byte("scan"), 0o600); err != nil {
				t.Fatal(err)
			}

			out := filepath.Join(t.TempDir(), "backup")
			m, err := backup.Run(ctx, h1.Config, h1.Bus, out, backup.Options{})
			if err != nil {
				t.Fatalf("backup: %v", err)
			}
			if !m.Stream || m.StreamMessages == 0 || m.MediaFiles != 1 {
				t.Fatalf("manifest %+v: want the stream and one media file", m)
			}
			if _, err := backup.Run(ctx, h1.Config, h1.Bus, out, backup.Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
				t.Fatalf("backup into a used directory: err = %v", err)
			}

			// Restore into a fresh data directory and database.
			cfg2 := h1.Config
			cfg2.DataDir = t.TempDir()
			cfg2.Database = db2
			cfg2.SigningKeyPath = filepath.Join(cfg2.DataDir, "signing.key")
			cfg2.MediaDir = filepath.Join(cfg2.DataDir, "media")
			b, err := bus.Start(ctx, bus.DefaultConfig(cfg2.NATSStoreDir()), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := backup.Restore(ctx, cfg2, b, out, backup.Options{}); err != nil {
				b.Close()
				t.Fatalf("restore: %v", err)
			}
			b.Close()

			h2 := hubtest.Start(t, hubtest.Options{Dialect: dialect, DatabaseURL: db2, DataDir: cfg2.DataDir})
			if h2.Key.ID != h1.Key.ID || !h2.Key.Public().Equal(h1.Key.Public()) {
				t.Fatalf("restored hub signs with %s, want %s", h2.Key.ID, h1.Key.ID)
			}
			alice2 := h2.Client(t, "alice", "pw-alice")
			got := map[id.EventID]bool{}
			msgs, err := alice2.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 200)
			if err != nil {
				t.Fatalf("messages after restore: %v", err)
			}
			for _, ev := range msgs.Chunk {
				got[ev.ID] = true
			}
			for _, e := range acked {
				if !got[e] {
					t.Errorf("acknowledged event %s lost in the restore", e)
				}
			}
			if b, err := os.ReadFile(filepath.Join(cfg2.MediaDir, "ab", "cdef")); err != nil || string(b) != "scan" {
				t.Errorf("media after restore: %q, %v", b, err)
			}
		})
	}
}

// TestRestoreRefusesAnotherKey keeps a restore from silently replacing a
// signing key other servers have pinned.
func TestRestoreRefusesAnotherKey(t *testing.T) {
	ctx := context.Background()
	h := hubtest.Start(t, hubtest.Options{})
	out := filepath.Join(t.TempDir(), "backup")
	if _, err := backup.Run(ctx, h.Config, nil, out, backup.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg := h.Config
	cfg.DataDir = t.TempDir()
	cfg.SigningKeyPath = filepath.Join(cfg.DataDir, "signing.key")
	cfg.MediaDir = filepath.Join(cfg.DataDir, "media")
	if _, _, err := signingkey.LoadOrGenerate(cfg.SigningKeyPath); err != nil {
		t.Fatal(err)
	}
	_, err := backup.Restore(ctx, cfg, nil, out, backup.Options{})
	if err == nil || !strings.Contains(err.Error(), "different signing key") {
		t.Fatalf("restore over another key: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "eimis.db")); err == nil {
		t.Fatal("the refused restore wrote the database")
	}
	cfg.ServerName = "other.test"
	if _, err := backup.Restore(ctx, cfg, nil, out, backup.Options{Force: true}); err == nil || !strings.Contains(err.Error(), "server") {
		t.Fatalf("restore into another server name: err = %v", err)
	}
}
