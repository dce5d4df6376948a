package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/bridges/appservice"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/store/pgtest"
)

// TestAppserviceMautrixBridge runs an unmodified mautrix-go bridgev2 bridge
// (bridges/appservice/testbridge: bridgev2 and its bridgev2/matrix
// appservice connector, with a network connector driven by the test)
// against a hub, through the registration file the bridge generates.
func TestAppserviceMautrixBridge(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := t.Context()
	alice := h.NewUser(t, "alice")
	tb := startTestBridge(t, h)

	// The operator installs the registration bridgev2 wrote, unmodified:
	// a random sender, the bot and the ghosts as exclusive namespaces.
	reg := tb.register(t, h, hubtest.Localpart("carol"))
	if !strings.HasPrefix(reg.Namespaces.Users[1].Regex, "^@eimistest_") {
		t.Fatalf("unexpected registration namespaces: %+v", reg.Namespaces)
	}
	// Bob consented to the bridge standing for him (an unmodified
	// bridgev2 cannot carry a link code: he approves it from his session).
	approve(t, reg.ID, "bob", h)

	// Start-up: bridgev2 calls /versions, /account/whoami as its bot, the
	// ping (the hub calls the bridge back with its hs_token), registers
	// its bot and reads the media config. Start fails on any of them.
	tb.post(t, "start", nil)

	// The Application Service API seen from outside, with the bridge's token.
	bob := hubtest.Localpart("bob")
	ghostBob := id.NewUserID("eimistest_"+bob, h.Config.ServerName)
	as := asClient{url: h.URL, token: reg.ASToken}
	if st, body := as.do(t, "GET", "/_matrix/client/v3/account/whoami", "", nil); st != 200 || body["user_id"] != "@"+reg.SenderLocalpart+":"+h.Config.ServerName {
		t.Fatalf("whoami as the appservice's sender: %d %v", st, body)
	}
	if st, body := as.do(t, "GET", "/_matrix/client/v3/account/whoami", "@eimistestbot:"+h.Config.ServerName, nil); st != 200 || body["user_id"] != "@eimistestbot:"+h.Config.ServerName {
		t.Fatalf("whoami as the bot: %d %v", st, body)
	}
	st, body := as.do(t, "POST", "/_matrix/client/v1/appservice/eimistest/ping", "", map[string]any{"transaction_id": "t1"})
	if _, ok := body["duration_ms"].(float64); st != 200 || !ok {
		t.Fatalf("ping: %d %v", st, body)
	}
	if st, body := as.do(t, "POST", "/_matrix/client/v1/appservice/other/ping", "", map[string]any{}); st != 403 || body["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("ping of another appservice: %d %v", st, body)
	}
	if st, body := as.do(t, "GET", "/_matrix/client/v3/account/whoami", string(alice.UserID), nil); st != 403 || body["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("masquerading as a practitioner's own account: %d %v", st, body)
	}

	// Remote -> Matrix: Bob writes on the remote network to Alice, who is
	// logged in to it. bridgev2 creates the portal room, registers Bob's
	// ghost (the puppet of practitioner Bob), invites Alice.
	tb.post(t, "login", map[string]any{"mxid": alice.UserID, "login": "alice-remote"})
	res := tb.post(t, "remote-message", map[string]any{"login": "alice-remote", "portal": "chat1", "sender": bob, "text": "Bonjour, résultats du patient reçus"})
	if res["success"] != true && res["queued"] != true {
		t.Fatalf("remote message not bridged: %v", res)
	}
	var portal struct {
		RoomID id.RoomID `json:"room_id"`
	}
	hubtest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		tb.get(t, "portal?login=alice-remote&portal=chat1", &portal)
		if portal.RoomID == "" {
			return fmt.Errorf("no portal room yet")
		}
		return nil
	})
	sy := &asSyncer{cli: alice}
	sy.waitFor(t, "the invite to the portal", func(r *mautrix.RespSync) bool {
		_, ok := r.Rooms.Invite[portal.RoomID]
		return ok
	})
	if _, err := alice.JoinRoomByID(ctx, portal.RoomID); err != nil {
		t.Fatalf("alice joins the portal: %v", err)
	}
	// The first message is in the room's history (bridgev2 may still be
	// sending it when she joins: the invite goes out first).
	hubtest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		msgs, err := alice.Messages(ctx, portal.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
		if err != nil {
			return err
		}
		if !asHasMessage(msgs.Chunk, ghostBob, "Bonjour, résultats du patient reçus") {
			return fmt.Errorf("the ghost's first message is not in the portal's history: %d events", len(msgs.Chunk))
		}
		return nil
	})
	// And a new one arrives through /sync.
	tb.post(t, "remote-message", map[string]any{"login": "alice-remote", "portal": "chat1", "sender": bob, "text": "Pouvez-vous confirmer ?"})
	sy.waitFor(t, "the ghost's message in /sync", func(r *mautrix.RespSync) bool {
		return asHasMessage(r.Rooms.Join[portal.RoomID].Timeline.Events, ghostBob, "Pouvez-vous confirmer ?")
	})
	// The ghost wears the directory's name, whatever the network said.
	var member event.MemberEventContent
	if err := alice.StateEvent(ctx, portal.RoomID, event.StateMember, string(ghostBob), &member); err != nil {
		t.Fatal(err)
	}
	if want, _ := h.Policy.DisplayName(ghostBob); member.Displayname != want || want == "" {
		t.Fatalf("ghost display name %q, want the directory's %q", member.Displayname, want)
	}

	// Matrix -> remote: Alice answers in the portal; the hub pushes it in
	// a transaction, bridgev2 hands it to the network connector.
	if _, err := alice.SendText(ctx, portal.RoomID, "Confirmé, merci"); err != nil {
		t.Fatal(err)
	}
	hubtest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		var got []struct{ Portal, Sender, Text string }
		tb.get(t, "received", &got)
		for _, m := range got {
			if m.Portal == "chat1" && m.Sender == string(alice.UserID) && m.Text == "Confirmé, merci" {
				return nil
			}
		}
		return fmt.Errorf("the network received %+v", got)
	})

	// Trust space: a remote user whose idNat the directory does not list
	// has no ghost. Registering it is refused with the refusal's code...
	stranger := hubtest.Localpart("user999")
	ghost := tb.post(t, "ghost-register", map[string]any{"sender": stranger})
	if ghost["ok"] != false || ghost["status"] != float64(403) || ghost["errcode"] != "M_FORBIDDEN" || ghost["eimis_code"] != "EIMIS_NOT_IN_DIRECTORY" {
		t.Fatalf("ghost of a stranger: %v", ghost)
	}
	// ...so what they write never reaches the room, while Bob's next
	// message, bridged after it, does.
	tb.post(t, "remote-message", map[string]any{"login": "alice-remote", "portal": "chat1", "sender": stranger, "text": "message d'un inconnu"})
	tb.post(t, "remote-message", map[string]any{"login": "alice-remote", "portal": "chat1", "sender": bob, "text": "après l'inconnu"})
	sy.waitFor(t, "Bob's message after the stranger's", func(r *mautrix.RespSync) bool {
		return asHasMessage(r.Rooms.Join[portal.RoomID].Timeline.Events, ghostBob, "après l'inconnu")
	})
	msgs, err := alice.Messages(ctx, portal.RoomID, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range msgs.Chunk {
		if b, _ := ev.Content.Raw["body"].(string); b == "message d'un inconnu" || ev.Sender == id.NewUserID("eimistest_"+stranger, h.Config.ServerName) {
			t.Fatalf("the stranger's message reached the room: %s %s", ev.Sender, ev.Content.VeryRaw)
		}
	}
	if _, err := h.Store.GetAccount(ctx, "eimistest_"+stranger); err == nil {
		t.Fatal("the stranger's ghost has an account")
	}
}

// TestAppserviceTransactions checks the delivery contract with a fake
// appservice: transactions in order, a failed one retried with the same
// ID and body until it is accepted, and IDs never reused after a restart.
func TestAppserviceTransactions(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			opts := hubtest.Options{Dialect: dialect, DataDir: t.TempDir()}
			if dialect == "postgres" {
				opts.DatabaseURL = pgtest.URL(t) // the same database after the restart
			}
			testAppserviceTransactions(t, opts)
		})
	}
}

// fakeRegistration is the registration of a fakeAS: its puppets are
// @fake_<idNat>.
func fakeRegistration(url string) (file, asToken, hsToken string) {
	asToken, hsToken = strings.Repeat("a", 48), strings.Repeat("h", 48)
	return fmt.Sprintf(`id: fake
url: %s
as_token: %s
hs_token: %s
sender_localpart: fakebot
namespaces:
  users:
    - exclusive: true
      regex: '^@fake_.*:hub\.test$'
`, url, asToken, hsToken), asToken, hsToken
}

// addAppservice registers file (as eimis-hub appservice add does) and has
// the given instances pick it up now rather than at their next reload.
func addAppservice(t *testing.T, file string, hubs ...*hubtest.Hub) {
	t.Helper()
	ctx := t.Context()
	reg, _, err := appservice.ParseRegistration([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	h := hubs[0]
	if _, err := appservice.Add(ctx, h.Store, reg, appservice.AddOptions{ServerName: h.Config.ServerName, Responsible: hubtest.Localpart("carol"), Practitioners: h.Policy}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hubs {
		if _, err := h.Trust.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.Appservices.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// approve records that the practitioner name consented, from a session
// of their own, to the appservice's puppets standing for them, and has
// the instances reload the consents now.
func approve(t *testing.T, asID, name string, hubs ...*hubtest.Hub) {
	t.Helper()
	ctx := t.Context()
	if _, err := hubs[0].Consent.Approve(ctx, hubs[0].UserID(name), door.Of(door.Appservice, asID)); err != nil {
		t.Fatal(err)
	}
	for _, h := range hubs {
		if err := h.Appservices.ReloadConsents(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func testAppserviceTransactions(t *testing.T, opts hubtest.Options) {
	fake := newFakeAS(2) // refuses the first two attempts
	defer fake.Close()
	file, asToken, hsToken := fakeRegistration(fake.URL)

	var lastTxn string
	var room id.RoomID
	t.Run("first run", func(t *testing.T) {
		h := hubtest.Start(t, opts)
		ctx := t.Context()
		addAppservice(t, file, h)
		approve(t, "fake", "bob", h)
		as := asClient{url: h.URL, token: asToken}
		puppet := "fake_" + hubtest.Localpart("bob")
		puppetID := id.NewUserID(puppet, h.Config.ServerName)

		// Registration: in the namespace, of someone in the directory.
		if st, body := as.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"type": "m.login.application_service", "username": puppet}); st != 200 || body["user_id"] != string(puppetID) {
			t.Fatalf("register puppet: %d %v", st, body)
		}
		if st, body := as.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"type": "m.login.application_service", "username": "other_" + hubtest.Localpart("bob")}); st != 400 || body["errcode"] != "M_EXCLUSIVE" {
			t.Fatalf("register outside the namespace: %d %v", st, body)
		}
		if st, body := as.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"type": "m.login.application_service", "username": "fake_" + hubtest.Localpart("user999")}); st != 403 || body["eimis_code"] != "EIMIS_NOT_IN_DIRECTORY" {
			t.Fatalf("register the puppet of a stranger: %d %v", st, body)
		}
		if st, body := as.do(t, "GET", "/_matrix/client/v3/account/whoami", string(puppetID), nil); st != 200 || body["user_id"] != string(puppetID) {
			t.Fatalf("whoami as the puppet: %d %v", st, body)
		}
		if st, body := as.do(t, "GET", "/_matrix/client/v3/account/whoami", "@fake_nobody:hub.test", nil); st != 403 {
			t.Fatalf("masquerading as an unregistered user: %d %v", st, body)
		}
		// m.login.application_service gives the puppet an ordinary device.
		st, body := as.do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": puppet}})
		if st != 200 || body["user_id"] != string(puppetID) || body["access_token"] == "" {
			t.Fatalf("appservice login: %d %v", st, body)
		}
		// Nobody else may take a name in the exclusive namespace.
		if st, body := as.do(t, "GET", "/_matrix/client/v3/register/available", "", nil, "username=fake_x"); st != 400 || body["errcode"] != "M_EXCLUSIVE" {
			t.Fatalf("register/available in the namespace: %d %v", st, body)
		}

		alice := h.NewUser(t, "alice")
		resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{puppetID}})
		if err != nil {
			t.Fatal(err)
		}
		room = resp.RoomID
		if st, body := as.do(t, "POST", "/_matrix/client/v3/join/"+string(room), string(puppetID), map[string]any{}); st != 200 {
			t.Fatalf("puppet joins: %d %v", st, body)
		}
		for i := range 3 {
			if _, err := alice.SendText(ctx, room, fmt.Sprintf("message %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		got := fake.waitMessages(t, "message 0", "message 1", "message 2")
		// The first transaction was refused twice and resent as it was.
		attempts := fake.attempts()
		first := attempts[0]
		if len(attempts) < 3 || attempts[1].txnID != first.txnID || attempts[2].txnID != first.txnID ||
			attempts[1].body != first.body || attempts[2].body != first.body {
			t.Fatalf("retries changed the transaction: %+v", attempts[:min(3, len(attempts))])
		}
		for _, a := range attempts {
			if a.auth != "Bearer "+hsToken {
				t.Fatalf("transaction sent with Authorization %q", a.auth)
			}
		}
		// In order, each once, the invite of the puppet first.
		if !asInOrder(got, "m.room.member:invite", "message 0", "message 1", "message 2") {
			t.Fatalf("events pushed out of order: %v", got)
		}
		lastTxn = attempts[len(attempts)-1].txnID
	})
	if t.Failed() {
		return
	}

	// After a restart, transaction IDs go on from where they were.
	h := hubtest.Start(t, opts)
	alice := h.Client(t, "alice", "pw-alice")
	if _, err := alice.SendText(t.Context(), room, "after the restart"); err != nil {
		t.Fatal(err)
	}
	fake.waitMessages(t, "after the restart")
	for _, a := range fake.attempts() {
		if strings.Contains(a.body, "after the restart") {
			if asTxnNumber(t, a.txnID) <= asTxnNumber(t, lastTxn) {
				t.Fatalf("transaction ID %s after the restart reuses or precedes %s", a.txnID, lastTxn)
			}
		}
	}
	fake.checkOnce(t)
}

// TestAppserviceTwoInstances runs two hub instances on one PostgreSQL and
// one NATS server: only one pushes to the appservice at a time, so events
// sent through both arrive once each and in order; when that instance
// stops, the other takes over.
func TestAppserviceTwoInstances(t *testing.T) {
	dbURL := pgtest.URL(t)
	natsURL := startNATS(t)
	key := hubtest.SigningKeyFile(t)
	opts := hubtest.Options{Dialect: "postgres", DatabaseURL: dbURL, NATSURL: natsURL, SigningKeyPath: key}
	fake := newFakeAS(0)
	defer fake.Close()
	file, asToken, _ := fakeRegistration(fake.URL)

	b := hubtest.Start(t, opts)
	b.CreateUser(t, "bob", "pw-bob")
	bob := b.Client(t, "bob", "pw-bob")
	var room id.RoomID
	t.Run("both instances", func(t *testing.T) {
		a := hubtest.Start(t, opts)
		addAppservice(t, file, a, b)
		approve(t, "fake", "carol", a, b)
		ctx := t.Context()
		alice := a.NewUser(t, "alice")
		puppet := id.NewUserID("fake_"+hubtest.Localpart("carol"), a.Config.ServerName)
		as := asClient{url: a.URL, token: asToken}
		if st, body := as.do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"type": "m.login.application_service", "username": puppet.Localpart()}); st != 200 {
			t.Fatalf("register puppet: %d %v", st, body)
		}
		resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID, puppet}})
		if err != nil {
			t.Fatal(err)
		}
		room = resp.RoomID
		if _, err := bob.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := alice.SendText(ctx, room, fmt.Sprintf("from A %d", i)); err != nil {
				t.Fatal(err)
			}
			if _, err := bob.SendText(ctx, room, fmt.Sprintf("from B %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		got := fake.waitMessages(t, "from A 4", "from B 4")
		var want []string
		for i := range 5 {
			want = append(want, fmt.Sprintf("from A %d", i), fmt.Sprintf("from B %d", i))
		}
		if !asInOrder(got, want...) {
			t.Fatalf("events pushed out of order or twice: %v", got)
		}
	})
	// Instance A is gone; B pushes now, whichever led before.
	if _, err := bob.SendText(t.Context(), room, "after A stopped"); err != nil {
		t.Fatal(err)
	}
	fake.waitMessages(t, "after A stopped")
	fake.checkOnce(t)
}

// asTxnNumber reads the counter of a "<registration ms>.<n>" txn ID.
func asTxnNumber(t *testing.T, txnID string) int {
	t.Helper()
	_, n, ok := strings.Cut(txnID, ".")
	v, err := strconv.Atoi(n)
	if !ok || err != nil {
		t.Fatalf("transaction ID %q", txnID)
	}
	return v
}

type fakeAttempt struct{ txnID, body, auth string }

// fakeAS is an appservice that refuses the first failures PUTs.
type fakeAS struct {
	*httptest.Server
	mu       sync.Mutex
	failures int
	tries    []fakeAttempt
	seen     map[string]bool
	accepted []json.RawMessage
	// ephemeral and unstable are the accepted transactions' ephemeral
	// and de.sorunome.msc2409.ephemeral events.
	ephemeral, unstable []json.RawMessage
}

// checkOnce fails if an event was delivered in two transactions.
func (f *fakeAS) checkOnce(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := map[string]bool{}
	for _, raw := range f.accepted {
		var ev struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(raw, &ev)
		if ids[ev.EventID] {
			t.Fatalf("event %s pushed twice", ev.EventID)
		}
		ids[ev.EventID] = true
	}
}

func newFakeAS(failures int) *fakeAS {
	f := &fakeAS{failures: failures, seen: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		txnID, ok := strings.CutPrefix(r.URL.Path, "/_matrix/app/v1/transactions/")
		if r.Method != http.MethodPut || !ok {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.tries = append(f.tries, fakeAttempt{txnID: txnID, body: string(body), auth: r.Header.Get("Authorization")})
		if f.failures > 0 {
			f.failures--
			http.Error(w, `{"errcode":"M_UNKNOWN"}`, http.StatusInternalServerError)
			return
		}
		var txn struct {
			Events    []json.RawMessage `json:"events"`
			Ephemeral []json.RawMessage `json:"ephemeral"`
			Unstable  []json.RawMessage `json:"de.sorunome.msc2409.ephemeral"`
		}
		_ = json.Unmarshal(body, &txn)
		if !f.seen[txnID] { // a transaction resent after it was accepted is skipped, as the spec asks
			f.seen[txnID] = true
			f.accepted = append(f.accepted, txn.Events...)
			f.ephemeral = append(f.ephemeral, txn.Ephemeral...)
			f.unstable = append(f.unstable, txn.Unstable...)
		}
		_, _ = w.Write([]byte("{}"))
	}))
	return f
}

func (f *fakeAS) attempts() []fakeAttempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeAttempt(nil), f.tries...)
}

// waitMessages waits until every body was accepted and returns, for each
// accepted event, "type:membership" or the message body.
func (f *fakeAS) waitMessages(t *testing.T, bodies ...string) []string {
	t.Helper()
	var out []string
	hubtest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		out = out[:0]
		for _, raw := range f.accepted {
			var ev struct {
				Type    string `json:"type"`
				Content struct {
					Body       string `json:"body"`
					Membership string `json:"membership"`
				} `json:"content"`
			}
			_ = json.Unmarshal(raw, &ev)
			if ev.Content.Body != "" {
				out = append(out, ev.Content.Body)
			} else {
				out = append(out, ev.Type+":"+ev.Content.Membership)
			}
		}
		for _, b := range bodies {
			if !strings.Contains(strings.Join(out, "\n"), b) {
				return fmt.Errorf("%q not pushed; pushed %v", b, out)
			}
		}
		return nil
	})
	return out
}

// asInOrder reports whether want appear in got in this order, each once.
func asInOrder(got []string, want ...string) bool {
	i := 0
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
		if i < len(want) && g == want[i] {
			i++
		}
	}
	for _, w := range want {
		if seen[w] != 1 {
			return false
		}
	}
	return i == len(want)
}

// asClient calls the Client-Server API with an appservice's as_token.
type asClient struct{ url, token string }

func (c asClient) do(t *testing.T, method, path, userID string, body any, query ...string) (int, map[string]any) {
	t.Helper()
	u := c.url + path
	q := append([]string(nil), query...)
	if userID != "" {
		q = append(q, "user_id="+userID)
	}
	if len(q) > 0 {
		u += "?" + strings.Join(q, "&")
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// asSyncer follows a client's /sync.
type asSyncer struct {
	cli   *mautrix.Client
	since string
}

func (s *asSyncer) waitFor(t *testing.T, what string, pred func(*mautrix.RespSync) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := s.cli.SyncRequest(t.Context(), 2000, s.since, "", false, event.PresenceOnline)
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		s.since = resp.NextBatch
		if pred(resp) {
			return
		}
	}
	t.Fatalf("/sync never showed %s", what)
}

func asHasMessage(evs []*event.Event, sender id.UserID, body string) bool {
	for _, ev := range evs {
		if ev.Type == event.EventMessage && ev.Sender == sender {
			if b, _ := ev.Content.Raw["body"].(string); b == body {
				return true
			}
		}
	}
	return false
}

// testBridge is the running bridgev2 bridge.
type testBridge struct {
	url, regPath string
	log          *syncBuffer
}

// startTestBridge builds and starts bridges/appservice/testbridge. It is
// built without cgo: bridgev2's encryption would need libolm otherwise.
func startTestBridge(t *testing.T, h *hubtest.Hub) *testBridge {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "testbridge")
	buildCtx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(buildCtx, "go", "build", "-o", bin, "github.com/eimis-hub/eimis/bridges/appservice/testbridge")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("GOTOOLCHAIN") == "" {
		build.Env = append(build.Env, "GOTOOLCHAIN=auto") // go.mod's go line may be newer than PATH's go
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the mautrix test bridge: %v\n%s", err, out)
	}
	tb := &testBridge{log: &syncBuffer{}}
	cmd := exec.Command(bin, "-homeserver", h.URL, "-domain", h.Config.ServerName,
		"-db", filepath.Join(dir, "bridge.db"), "-registration", filepath.Join(dir, "registration.yaml"))
	cmd.Stderr = tb.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() || os.Getenv("EIMIS_TEST_LOG") != "" {
			t.Logf("test bridge log:\n%s", tb.log)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "TESTBRIDGE "); ok {
				lines <- rest
			}
		}
	}()
	select {
	case l := <-lines:
		tb.url, tb.regPath, _ = strings.Cut(l, " ")
	case <-exited:
		t.Fatalf("the test bridge exited:\n%s", tb.log)
	case <-time.After(60 * time.Second):
		t.Fatal("the test bridge did not start")
	}
	return tb
}

// register installs the bridge's generated registration file in the hub
// (as `eimis-hub appservice add` does) and has the hub pick it up.
func (tb *testBridge) register(t *testing.T, h *hubtest.Hub, responsible string) *appservice.Registration {
	t.Helper()
	data, err := os.ReadFile(tb.regPath)
	if err != nil {
		t.Fatal(err)
	}
	reg, _, err := appservice.ParseRegistration(data)
	if err != nil {
		t.Fatalf("the bridge's registration file: %v\n%s", err, data)
	}
	ctx := t.Context()
	if _, err := appservice.Add(ctx, h.Store, reg, appservice.AddOptions{
		ServerName: h.Config.ServerName, Responsible: responsible, Name: "Pont de test", Practitioners: h.Policy,
	}); err != nil {
		t.Fatalf("add the bridge's registration: %v\n%s", err, data)
	}
	// What the hub's periodic reloads do, now.
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Appservices.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	return reg
}

func (tb *testBridge) post(t *testing.T, path string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(tb.url+"/_testbridge/"+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("test bridge %s: %d %s", path, resp.StatusCode, raw)
	}
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return out
}

func (tb *testBridge) get(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(tb.url + "/_testbridge/" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("test bridge %s: %d %s", path, resp.StatusCode, raw)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
