package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTPSettings is reported verbatim so a result can be judged knowing how
// the client was configured.
type HTTPSettings struct {
	MaxIdleConns        int    `json:"max_idle_conns"`
	MaxIdleConnsPerHost int    `json:"max_idle_conns_per_host"`
	MaxConnsPerHost     int    `json:"max_conns_per_host"`
	IdleConnTimeout     string `json:"idle_conn_timeout"`
	KeepAlive           bool   `json:"keep_alive"`
	Protocol            string `json:"protocol"`
	RequestTimeout      string `json:"request_timeout"`
}

// newTransport builds the one transport every request shares.
//
//   - MaxIdleConnsPerHost is sized for every request that can be in flight at
//     once (senders + one long-poll per sync loop + setup workers). Go's
//     default of 2 would close every other connection as it is returned to
//     the pool, so most requests would pay a fresh TCP (and TLS) handshake,
//     the server would see connection churn instead of messages, and at a
//     few thousand requests/s the client runs out of ephemeral ports to
//     TIME_WAIT. The latency measured would then be the handshake's.
//   - MaxConnsPerHost stays unlimited: a cap would queue requests inside the
//     client, invisibly to the server and to anyone reading the report.
//   - Keep-alive stays on for the same reason as the pool; the dialer's TCP
//     keep-alive probes keep idle long-poll connections from being silently
//     dropped by middleboxes.
//   - HTTP/1.1 only (a custom TLS config and DialContext disable Go's
//     automatic HTTP/2): each in-flight request then has its own connection,
//     so --concurrency means the same thing against every server, and
//     hundreds of /sync long-polls cannot exhaust an HTTP/2 connection's
//     stream limit and queue sends behind them.
//   - No proxy from the environment: we are measuring the homeserver.
func newTransport(poolSize int, insecure bool) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: insecure},
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          poolSize,
		MaxIdleConnsPerHost:   poolSize,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 0,
		ForceAttemptHTTP2:     false,
	}
}

func describeTransport(t *http.Transport, requestTimeout time.Duration) HTTPSettings {
	return HTTPSettings{
		MaxIdleConns:        t.MaxIdleConns,
		MaxIdleConnsPerHost: t.MaxIdleConnsPerHost,
		MaxConnsPerHost:     t.MaxConnsPerHost,
		IdleConnTimeout:     t.IdleConnTimeout.String(),
		KeepAlive:           !t.DisableKeepAlives,
		Protocol:            "HTTP/1.1",
		RequestTimeout:      requestTimeout.String(),
	}
}

// matrixError is a non-2xx answer. Status 0 means the request never got an
// HTTP answer (connection refused, timeout, ...).
type matrixError struct {
	Status       int    `json:"-"`
	Code         string `json:"errcode"`
	Message      string `json:"error"`
	RetryAfterMs int64  `json:"retry_after_ms"`
	Session      string `json:"session"`
	cause        error
}

func (e *matrixError) Error() string {
	if e.Status == 0 {
		return e.cause.Error()
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

func (e *matrixError) Unwrap() error { return e.cause }

// failureKey names a failed request in the report's by-status breakdown.
func failureKey(err error) string {
	var me *matrixError
	if errors.As(err, &me) && me.Status != 0 {
		return strconv.Itoa(me.Status)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "transport"
}

type api struct {
	base string
	hc   *http.Client
}

type account struct {
	idx       int32
	localpart string
	userID    string
	token     string
}

// do performs one request and returns the whole response body. It reads the
// body before returning so callers can take their "received" timestamp
// right after it, excluding the client's own JSON decoding from latencies.
func (a *api) do(ctx context.Context, method, path, token string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				return nil, err
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, &matrixError{cause: err}
	}
	defer resp.Body.Close()
	// Always drain the body: a connection is only returned to the pool
	// once its response has been read to the end.
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &matrixError{cause: err}
	}
	if resp.StatusCode/100 != 2 {
		me := &matrixError{Status: resp.StatusCode}
		_ = json.Unmarshal(out, me)
		if me.Code == "" {
			me.Message = string(bytes.TrimSpace(out[:min(len(out), 200)]))
		}
		return nil, me
	}
	return out, nil
}

func (a *api) doJSON(ctx context.Context, method, path, token string, body, out any) error {
	b, err := a.do(ctx, method, path, token, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding response: %w", method, path, err)
	}
	return nil
}

// serverVersion names the implementation for the report, best effort: the
// federation version endpoint is the only standard place that says which
// server this is, and it is often not exposed on the client port.
func (a *api) serverVersion(ctx context.Context) string {
	var out struct {
		Server struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"server"`
	}
	if a.doJSON(ctx, http.MethodGet, "/_matrix/federation/v1/version", "", nil, &out) != nil || out.Server.Name == "" {
		return ""
	}
	return strings.TrimSpace(out.Server.Name + " " + out.Server.Version)
}

// checkClientAPI fails fast, without setup's retries, when --hs does not
// point at a Matrix client API at all.
func (a *api) checkClientAPI(ctx context.Context) error {
	var out struct {
		Versions []string `json:"versions"`
	}
	if err := a.doJSON(ctx, http.MethodGet, "/_matrix/client/versions", "", nil, &out); err != nil {
		return fmt.Errorf("%s does not answer as a Matrix homeserver: %w", a.base, err)
	}
	return nil
}

type loginResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
}

// registrationMAC is the MAC Synapse's shared-secret registration API
// expects: hex HMAC-SHA1, keyed by the shared secret, over the NUL-separated
// nonce, username, password and "admin"/"notadmin".
func registrationMAC(secret, nonce, username, password string, admin bool) string {
	m := hmac.New(sha1.New, []byte(secret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	for i, part := range []string{nonce, username, password, role} {
		if i > 0 {
			m.Write([]byte{0})
		}
		m.Write([]byte(part))
	}
	return hex.EncodeToString(m.Sum(nil))
}

func (a *api) registerShared(ctx context.Context, secret, username, password string) (*loginResponse, error) {
	var n struct {
		Nonce string `json:"nonce"`
	}
	if err := a.doJSON(ctx, http.MethodGet, "/_synapse/admin/v1/register", "", nil, &n); err != nil {
		return nil, err
	}
	var out loginResponse
	err := a.doJSON(ctx, http.MethodPost, "/_synapse/admin/v1/register", "", map[string]any{
		"nonce":    n.Nonce,
		"username": username,
		"password": password,
		"admin":    false,
		"mac":      registrationMAC(secret, n.Nonce, username, password, false),
	}, &out)
	return &out, err
}

func (a *api) registerOpen(ctx context.Context, username, password string) (*loginResponse, error) {
	req := map[string]any{
		"auth":     map[string]any{"type": "m.login.dummy"},
		"username": username,
		"password": password,
	}
	var out loginResponse
	err := a.doJSON(ctx, http.MethodPost, "/_matrix/client/v3/register", "", req, &out)
	// Servers that insist on the full user-interactive dance answer 401
	// with a session; completing the dummy stage within it is the second
	// half of that dance.
	var me *matrixError
	if errors.As(err, &me) && me.Status == http.StatusUnauthorized && me.Session != "" {
		req["auth"] = map[string]any{"type": "m.login.dummy", "session": me.Session}
		err = a.doJSON(ctx, http.MethodPost, "/_matrix/client/v3/register", "", req, &out)
	}
	return &out, err
}

func (a *api) login(ctx context.Context, username, password string) (*loginResponse, error) {
	var out loginResponse
	err := a.doJSON(ctx, http.MethodPost, "/_matrix/client/v3/login", "", map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": username},
		"password":   password,
	}, &out)
	return &out, err
}

func (a *api) createRoom(ctx context.Context, creator *account, name string, invite []string) (string, error) {
	var out struct {
		RoomID string `json:"room_id"`
	}
	err := a.doJSON(ctx, http.MethodPost, "/_matrix/client/v3/createRoom", creator.token, map[string]any{
		"preset": "private_chat",
		"name":   name,
		"invite": invite,
	}, &out)
	if err == nil && out.RoomID == "" {
		err = errors.New("createRoom: no room_id in response")
	}
	return out.RoomID, err
}

func (a *api) join(ctx context.Context, user *account, roomID string) error {
	return a.doJSON(ctx, http.MethodPost, "/_matrix/client/v3/join/"+url.PathEscape(roomID), user.token, map[string]any{}, nil)
}

type benchTag struct {
	Run string `json:"run"`
	Seq int64  `json:"seq"`
}

func messageBody(run string, seq int64) []byte {
	b, _ := json.Marshal(struct {
		MsgType string   `json:"msgtype"`
		Body    string   `json:"body"`
		Bench   benchTag `json:"eimis.bench"`
	}{"m.text", fmt.Sprintf("bench %s %d", run, seq), benchTag{run, seq}})
	return b
}

func (a *api) send(ctx context.Context, user *account, roomID, txnID string, body []byte) error {
	var out struct {
		EventID string `json:"event_id"`
	}
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/m.room.message/" + url.PathEscape(txnID)
	if err := a.doJSON(ctx, http.MethodPut, path, user.token, body, &out); err != nil {
		return err
	}
	if out.EventID == "" {
		return &matrixError{Status: 200, Code: "NO_EVENT_ID", Message: "send response without event_id"}
	}
	return nil
}

// syncEvent decodes only what the bench needs; everything else in a
// timeline event is skipped by the decoder.
type syncEvent struct {
	Type    string `json:"type"`
	EventID string `json:"event_id"`
	Content struct {
		Bench *benchTag `json:"eimis.bench"`
	} `json:"content"`
}

type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events    []syncEvent `json:"events"`
				Limited   bool        `json:"limited"`
				PrevBatch string      `json:"prev_batch"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

func (a *api) sync(ctx context.Context, user *account, filter, since string, timeout time.Duration) ([]byte, error) {
	q := url.Values{}
	q.Set("filter", filter)
	q.Set("timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	// Presence updates for hundreds of bench users would be pure noise
	// in both the server's work and our responses.
	q.Set("set_presence", "offline")
	if since != "" {
		q.Set("since", since)
	}
	return a.do(ctx, http.MethodGet, "/_matrix/client/v3/sync?"+q.Encode(), user.token, nil)
}

type messagesResponse struct {
	Chunk []syncEvent `json:"chunk"`
	End   string      `json:"end"`
}

func (a *api) messages(ctx context.Context, user *account, roomID, from string, limit int) ([]byte, error) {
	q := url.Values{}
	q.Set("dir", "b")
	q.Set("from", from)
	q.Set("limit", strconv.Itoa(limit))
	return a.do(ctx, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?"+q.Encode(), user.token, nil)
}

func (a *api) uploadFilter(ctx context.Context, user *account, filter string) (string, error) {
	var out struct {
		FilterID string `json:"filter_id"`
	}
	err := a.doJSON(ctx, http.MethodPost, "/_matrix/client/v3/user/"+url.PathEscape(user.userID)+"/filter", user.token, []byte(filter), &out)
	return out.FilterID, err
}
