package hub_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/directory/fhir"
	"github.com/eimis-hub/eimis/internal/directory/fhir/fhirtest"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFHIRDirectory: a hub fed by the Annuaire Santé FHIR API (a fake
// serving realistic Bundles) admits its practitioners, removes one the API
// deactivates, and through an outage keeps the last good directory while
// saying so on /_eimis/ready and in the metrics.
func TestFHIRDirectory(t *testing.T) {
	const key = "test-esante-key"
	api := fhirtest.New(t, key, fhirtest.Generate(6, time.Now().Add(-48*time.Hour)))
	h := hubtest.Start(t, hubtest.Options{NoDirectory: true, Configure: func(c *config.Config) {
		c.DirectoryFHIRURL, c.DirectoryFHIRAPIKey = api.BaseURL(), key
	}})
	ctx := ctxT(t)
	// serve syncs at start: the hub becomes ready once the directory is in.
	hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if code, body := getText(t, h.URL+"/_eimis/ready"); code != 200 {
			return errors.New(body)
		}
		return nil
	})
	anne, paul := "8"+fhirtest.RPPS(0), "8"+fhirtest.RPPS(1)
	a := h.NewUser(t, anne)
	p := h.NewUser(t, paul)
	room, err := a.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{p.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}

	client, err := fhir.New(fhir.Config{BaseURL: api.BaseURL(), APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	// The API deactivates Paul; the next (incremental) sync removes him.
	api.SetActive(paul, false)
	res, err := h.Trust.SyncFHIR(ctx, client, false)
	if err != nil || res.Full || res.Inactivated != 1 {
		t.Fatalf("incremental sync = %+v, %v", res, err)
	}
	members, err := a.JoinedMembers(ctx, room.RoomID)
	if err != nil || len(members.Joined) != 1 {
		t.Fatalf("members after the API deactivated paul = %v, %v", members, err)
	}

	// Outage: the last good directory stays, and it says so.
	api.SetDown(true)
	if _, err := h.Trust.SyncFHIR(ctx, client, false); err == nil {
		t.Fatal("sync during an outage must fail")
	}
	code, body := getText(t, h.URL+"/_eimis/ready")
	var ready map[string]string
	_ = json.Unmarshal([]byte(body), &ready)
	if code != 200 || !strings.HasPrefix(ready["directory"], "degraded: FHIR sync failing") {
		t.Fatalf("ready during outage = %d %s", code, body)
	}
	_, metrics := getText(t, h.URL+"/metrics")
	if !strings.Contains(metrics, "eimis_directory_fhir_failing 1") || !strings.Contains(metrics, "eimis_directory_entries 6") {
		t.Fatalf("metrics lack the FHIR failure or the directory size")
	}
	if _, err := a.SendText(ctx, room.RoomID, "toujours là"); err != nil {
		t.Fatalf("an active practitioner keeps working through the outage: %v", err)
	}
	again := h.Client(t, anne, "pw-"+anne)
	if again.AccessToken == "" {
		t.Fatal("login during the outage")
	}
	// Back: ready again, not degraded.
	api.SetDown(false)
	if _, err := h.Trust.SyncFHIR(ctx, client, false); err != nil {
		t.Fatal(err)
	}
	if code, body := getText(t, h.URL+"/_eimis/ready"); code != 200 || strings.Contains(body, "degraded") {
		t.Fatalf("ready after the outage = %d %s", code, body)
	}
}

// TestNoDirectoryNoEntry: deny when unsure. Without a directory the hub
// admits nobody and is not ready.
func TestNoDirectoryNoEntry(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{NoDirectory: true})
	code, body := getText(t, h.URL+"/_eimis/ready")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no health directory loaded") {
		t.Fatalf("ready without a directory = %d %s", code, body)
	}
	_, err := h.IDs.CreateAccount(ctxT(t), hubtest.Localpart("alice"), "pw", false)
	if err == nil || !strings.Contains(err.Error(), "directory is not loaded") {
		t.Fatalf("account without a directory: %v", err)
	}
}
