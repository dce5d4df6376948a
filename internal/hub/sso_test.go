package hub_test

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/psc/psctest"
)

const clientRedirect = "http://client.example/after-login?state=keep"

// browser follows redirects by hand, as a browser would, and stops when a
// response is not a redirect or leaves for the Matrix client's URL.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	return &browser{t: t, c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// login runs the m.login.sso dance from the hub's redirect endpoint and
// returns the loginToken the client receives, or the final page.
func (b *browser) login(hubURL string) (token string, status int, page string) {
	b.t.Helper()
	next := hubURL + "/_matrix/client/v3/login/sso/redirect/psc?redirectUrl=" + url.QueryEscape(clientRedirect)
	for range 10 {
		if strings.HasPrefix(next, "http://client.example/") {
			u, _ := url.Parse(next)
			if u.Query().Get("state") != "keep" {
				b.t.Fatalf("the client's own query was lost: %s", next)
			}
			return u.Query().Get("loginToken"), http.StatusFound, ""
		}
		resp, err := b.c.Get(next)
		if err != nil {
			b.t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return "", resp.StatusCode, string(body)
		}
		loc, err := resp.Location()
		if err != nil {
			b.t.Fatal(err)
		}
		next = loc.String()
	}
	b.t.Fatal("redirect loop")
	return "", 0, ""
}

func tokenLogin(t *testing.T, hubURL, token string) (*mautrix.Client, error) {
	cli, _ := mautrix.NewClient(hubURL, "", "")
	_, err := cli.Login(ctxT(t), &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: token, StoreCredentials: true})
	return cli, err
}

// TestSSOLogin: a practitioner logs in through Pro Santé Connect (here a
// test OpenID provider) and chats; every way it can go wrong ends on a
// clear page or a Matrix error, never in a session.
func TestSSOLogin(t *testing.T) {
	op := psctest.New(t)
	people := hubtest.People()
	h := hubtest.Start(t, hubtest.Options{Directory: people, Configure: func(c *config.Config) {
		c.PSCIssuer, c.PSCClientID, c.PSCClientSecret = op.URL(), psctest.ClientID, psctest.ClientSecret
	}})
	ctx := ctxT(t)
	// Mallory was in last month's extract, not in this one.
	h.ImportDirectory(t, hubtest.Without(people, "mallory"))
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	bob := h.NewUser(t, "bob")

	flows, err := bob.GetLoginFlows(ctx)
	if err != nil || !flows.HasFlow(mautrix.AuthTypeSSO) || !flows.HasFlow(mautrix.AuthTypeToken) {
		t.Fatalf("login flows = %+v, %v", flows, err)
	}

	// Success: first login creates the account, named from the directory.
	op.SetIDNat(hubtest.Localpart("alice"))
	token, status, page := newBrowser(t).login(h.URL)
	if token == "" {
		t.Fatalf("no login token: %d %s", status, page)
	}
	if got := op.LastAuthorizeQuery().Get("acr_values"); got != "eidas1" {
		t.Fatalf("acr_values requested = %q", got)
	}
	alice, err := tokenLogin(t, h.URL, token)
	if err != nil || alice.UserID != h.UserID("alice") {
		t.Fatalf("token login: %v (%s)", err, alice.UserID)
	}
	if _, err := tokenLogin(t, h.URL, token); respErr(err) != "M_FORBIDDEN" {
		t.Fatalf("a login token is single-use, got %v", err)
	}
	name, err := alice.GetOwnDisplayName(ctx)
	if err != nil || name.DisplayName != "Alice Test - Médecin" {
		t.Fatalf("display name = %+v, %v", name, err)
	}
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "connectée par PSC"); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, "", hasBody("connectée par PSC"))

	// Second login finds the account.
	token, _, _ = newBrowser(t).login(h.URL)
	if again, err := tokenLogin(t, h.URL, token); err != nil || again.UserID != alice.UserID {
		t.Fatalf("second login: %v", err)
	}

	failures := []struct {
		name   string
		setup  func()
		status int
		page   string
	}{
		{"wrong acr", func() { op.SetIDNat(hubtest.Localpart("carol")); op.SetACR("eidas0") }, 403, "carte CPS"},
		{"bad nonce", func() { op.SetACR(""); op.SetNonceOverride("replayed") }, 400, "could not be verified"},
		{"unknown idNat", func() { op.SetNonceOverride(""); op.SetIDNat(hubtest.Localpart("user999")) }, 403, "not in the health directory"},
		{"inactive practitioner", func() { op.SetIDNat(hubtest.Localpart("mallory")) }, 403, "not active in the health directory"},
		{"user cancels", func() { op.SetIDNat(hubtest.Localpart("carol")); op.SetDenyAuthorize("access_denied") }, 502, "indisponible"},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			f.setup()
			token, status, page := newBrowser(t).login(h.URL)
			if token != "" || status != f.status || !strings.Contains(page, f.page) {
				t.Fatalf("got token %q, %d %q; want %d with %q", token, status, page, f.status, f.page)
			}
			if strings.Contains(page, "goroutine") || strings.Contains(page, ".go:") {
				t.Fatal("the page leaks internals")
			}
		})
	}
	op.SetDenyAuthorize("")
	// No session was created for carol by any failure.
	if _, err := h.Store.GetAccount(ctx, hubtest.Localpart("carol")); err == nil {
		t.Fatal("a failed login created an account")
	}

	// A forged or replayed state never reaches the provider's answer.
	resp, err := http.Get(h.URL + "/_eimis/psc/callback?state=forged&code=x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "expired") {
		t.Fatalf("forged state: %d %s", resp.StatusCode, body)
	}
	// A redirectUrl that is not http(s) is refused before leaving the hub.
	resp, err = newBrowser(t).c.Get(h.URL + "/_matrix/client/v3/login/sso/redirect?redirectUrl=" + url.QueryEscape("javascript:alert(1)"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("javascript: redirectUrl: %d", resp.StatusCode)
	}
	if _, err := tokenLogin(t, h.URL, "eimis_lt_forged"); !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("forged login token: %v", err)
	}
}
