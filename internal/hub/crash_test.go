package hub_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// hubBinary builds cmd/eimis-hub once per test run: the crash test needs a
// real process to SIGKILL.
func hubBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "eimis-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "eimis-hub")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/eimis-hub/eimis/cmd/eimis-hub").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type hubProc struct {
	cmd *exec.Cmd
	url string
}

func startProc(t *testing.T, args []string, addr string) *hubProc {
	t.Helper()
	// A hub without a directory refuses everyone (and is not ready):
	// import the test directory first, as an operator would.
	imp := exec.Command(hubBinary(t), append(append([]string{"directory", "import"}, args...), hubtest.ExtractFile(t, hubtest.People()))...)
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("directory import: %v\n%s", err, out)
	}
	// Tests send at machine speed from one address: rate limits off.
	cmd := exec.Command(hubBinary(t), append([]string{"serve", "--listen", addr, "--rate-limits=false"}, args...)...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &hubProc{cmd: cmd, url: "http://" + addr}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	hubtest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(p.url + "/_eimis/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("ready: %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

// sharedSecretUser registers through the Synapse-compatible admin API.
func sharedSecretUser(t *testing.T, url, secret, name string) *mautrix.Client {
	t.Helper()
	status, out := registerShared(t, url, secret, hubtest.Localpart(name))
	uid, _ := out["user_id"].(string)
	tok, _ := out["access_token"].(string)
	if status != 200 || uid == "" || tok == "" {
		t.Fatalf("shared-secret register %s: %d %v", name, status, out)
	}
	cli, _ := mautrix.NewClient(url, id.UserID(uid), tok)
	cli.Client = &http.Client{Timeout: 30 * time.Second}
	return cli
}

// TestCrashMidBurst SIGKILLs the hub during a burst of sends. After a
// restart every send that got a 200 is in the room exactly once, a retry
// of its transaction ID returns the same event, every member's /sync has
// it, and the outbox drains to NATS.
func TestCrashMidBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real hub process")
	}
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			const secret = "crash-test-shared-secret"
			dataDir := t.TempDir()
			args := []string{"--data-dir", dataDir, "--server-name", "hub.test", "--registration-shared-secret", secret, "--log-level", "warn"}
			if dialect == "postgres" {
				args = append(args, "--database", pgtest.URL(t))
			}
			addr := freePort(t)
			p := startProc(t, args, addr)
			ctx := context.Background()

			alice := sharedSecretUser(t, p.url, secret, "alice")
			bob := sharedSecretUser(t, p.url, secret, "bob")
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
			before, err := bob.SyncRequest(ctx, 0, "", "", false, "")
			if err != nil {
				t.Fatal(err)
			}

			const senders, killAfter = 8, 150
			var mu sync.Mutex
			acked := map[string]id.EventID{} // txn → event
			var ackCount atomic.Int64
			var wg sync.WaitGroup
			for g := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						txn := fmt.Sprintf("g%d-%d", g, n)
						r, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
							map[string]any{"msgtype": "m.text", "body": txn}, mautrix.ReqSendEvent{TransactionID: txn})
						if err != nil {
							return // the hub died under us
						}
						mu.Lock()
						acked[txn] = r.EventID
						mu.Unlock()
						if ackCount.Add(1) == killAfter {
							_ = p.cmd.Process.Signal(syscall.SIGKILL)
						}
					}
				}()
			}
			wg.Wait()
			_ = p.cmd.Wait()
			if len(acked) < killAfter {
				t.Fatalf("only %d sends acknowledged before the kill", len(acked))
			}

			p = startProc(t, args, addr)
			// A retry of every acknowledged transaction returns the same event.
			for txn, evID := range acked {
				r, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
					map[string]any{"msgtype": "m.text", "body": txn}, mautrix.ReqSendEvent{TransactionID: txn})
				if err != nil || r.EventID != evID {
					t.Fatalf("retry of %s after restart: %v, got %s want %s", txn, err, r.EventID, evID)
				}
			}

			// Every acknowledged event is in the room exactly once.
			seen := map[string]int{}
			from := ""
			for {
				msgs, err := alice.Messages(ctx, room.RoomID, from, "", mautrix.DirectionBackward, nil, 500)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range msgs.Chunk {
					if b, ok := e.Content.Raw["body"].(string); ok {
						seen[b]++
					}
				}
				if msgs.End == "" {
					break
				}
				from = msgs.End
			}
			for txn := range acked {
				if seen[txn] != 1 {
					t.Fatalf("acknowledged %s stored %d times", txn, seen[txn])
				}
			}
			for body, n := range seen {
				if n != 1 {
					t.Fatalf("%s stored %d times", body, n)
				}
			}

			// Bob's incremental sync from before the burst has every one.
			filter := `{"room":{"timeline":{"limit":1000}}}`
			var resp mautrix.RespSync
			_, err = bob.MakeRequest(ctx, http.MethodGet,
				bob.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, map[string]string{"since": before.NextBatch, "filter": filter}),
				nil, &resp)
			if err != nil {
				t.Fatal(err)
			}
			got := map[id.EventID]int{}
			if jr := resp.Rooms.Join[room.RoomID]; jr != nil {
				if jr.Timeline.Limited {
					t.Fatalf("timeline limited at %d events", len(jr.Timeline.Events))
				}
				for _, e := range jr.Timeline.Events {
					got[e.ID]++
				}
			}
			for txn, evID := range acked {
				if got[evID] != 1 {
					t.Fatalf("bob's sync has acknowledged %s (%s) %d times", txn, evID, got[evID])
				}
			}

			// The relay re-published what the crash left in the outbox.
			cfg := config.Defaults()
			cfg.DataDir = dataDir
			if dialect == "postgres" {
				cfg.Database = args[len(args)-1]
			}
			cfg.Finish()
			st, err := hub.OpenStore(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			// Rows stay 5 s after their publish (longer than JetStream's
			// fsync interval) before the relay deletes them.
			hubtest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
				pending, err := st.PendingOutbox(ctx, 0, 10)
				if err != nil {
					return err
				}
				if len(pending) > 0 {
					return fmt.Errorf("%d outbox rows still pending", len(pending))
				}
				return nil
			})
			t.Logf("%d sends acknowledged before SIGKILL, %d messages stored", len(acked), len(seen))
		})
	}
}
