package demo_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// chromium finds Debian's chromium; CI must have it (.ci/run installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (required under CI=true)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// TestDemoInBrowser is what a newcomer does after `make demo`: app A and
// app B open in two browser tabs (headless Chromium); a message typed in
// app A appears in app B.
func TestDemoInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	exe := chromium(t)
	w := startWorld(t)
	alice, bob := string(w.hub.UserID("alice")), string(w.hub.UserID("bob"))
	var created struct {
		RoomID string `json:"room_id"`
	}
	post(t, w.a.url+"/api/rooms", map[string]any{"as": alice, "name": "Astreinte cardio", "invite": []string{bob}}, &created)
	waitRoom(t, w.b.url, bob, created.RoomID)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	browser, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	tabB, cancelB := chromedp.NewContext(ctx)
	defer cancelB()

	// App B's tab first, so it is listening when A sends.
	if err := chromedp.Do(tabB,
		chromedp.Navigate(w.b.url),
		chromedp.WaitVisible(`#rooms li`),
		chromedp.Click(`#rooms li`),
	); err != nil {
		t.Fatalf("app B page: %v", err)
	}
	const text = "Tension 12/8, je passe à 18h"
	if err := chromedp.Do(ctx,
		chromedp.Navigate(w.a.url),
		chromedp.WaitVisible(`#rooms li`),
		chromedp.Click(`#rooms li`),
		chromedp.WaitEnabled(`#text`),
		chromedp.SendKeys(`#text`, text),
		chromedp.Click(`#send`),
	); err != nil {
		t.Fatalf("app A page: %v", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(title, "App A") {
		t.Fatalf("app A's title = %q", title)
	}
	waitBody(t, w.b.url, bob, text) // the app has it; now the page
	var got string
	hubtest.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		var err error
		got, err = chromedp.Run(tabB, chromedp.Evaluate[string](`document.querySelector("#messages").textContent`))
		if err != nil {
			return err
		}
		if !strings.Contains(got, text) {
			return fmt.Errorf("app B's page shows %q", got)
		}
		return nil
	})
	if !strings.Contains(got, text) || !strings.Contains(got, "Alice Test - Médecin") {
		t.Fatalf("app B shows %q", got)
	}
}

// waitRoom waits until an app lists a room for one of its users.
func waitRoom(t *testing.T, appURL, as, roomID string) {
	t.Helper()
	waitFor(t, appURL, as, func(r roomsResp) bool {
		for _, room := range r.Rooms {
			if room.ID == roomID {
				return true
			}
		}
		return false
	})
}
