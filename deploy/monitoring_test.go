package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// notYetExported are metrics the dashboard and alerts use that a hub of
// this branch does not export yet. Each names the work that brings it;
// remove the entry when that work is merged (the test then checks it).
var notYetExported = map[string]string{
	// The federation sender (its helper is in flight) exports it.
	"eimis_federation_destinations_down": "federation sender",
	// Declared in internal/telemetry (EventDelivered) but not yet
	// recorded by the sync API: wire Metrics.EventDelivered where /sync
	// hands an event to a client.
	"eimis_event_delivery_seconds": "sync API delivery timing",
}

var metricName = regexp.MustCompile(`\beimis_[a-z0-9_]+`)

// usedMetrics returns the eimis_* series names the alert rules and the
// dashboard query, by where they are used.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(where, expr string) {
		for _, m := range metricName.FindAllString(expr, -1) {
			used[m] = append(used[m], where)
		}
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert string
				Expr  string
			}
		}
	}
	b, err := os.ReadFile("monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	nRules := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("alerts.yaml group %s: a rule without alert or expr", g.Name)
			}
			add("alert "+r.Alert, r.Expr)
			nRules++
		}
	}
	if nRules == 0 {
		t.Fatal("alerts.yaml has no rules")
	}

	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err = os.ReadFile("monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			add("panel "+p.Title, tg.Expr)
		}
	}
	return used
}

// familyOf maps a series name to the metric family a scrape declares.
func familyOf(series string, families map[string]bool) string {
	if families[series] {
		return series
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok && families[base] {
			return base
		}
	}
	return ""
}

// TestMonitoringMetricsExist starts a hub, makes it do what the panels
// show (log in, send, sync, be refused), scrapes /metrics and checks that
// every eimis_* metric the alerts and the dashboard query is exported.
func TestMonitoringMetricsExist(t *testing.T) {
	used := usedMetrics(t)
	h := hubtest.Start(t, hubtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendText(ctx, room.RoomID, "bonjour"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
		t.Fatal(err)
	}
	// A refusal: someone who is not in the directory cannot be invited.
	if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: id.UserID("@nobody:" + h.Config.ServerName)}); err == nil {
		t.Fatal("inviting someone outside the directory was accepted")
	}

	pendingFamilies := map[string]bool{}
	for m := range notYetExported {
		pendingFamilies[m] = true
	}
	var missing []string
	hubtest.CheckFor(t, time.Minute, 100*time.Millisecond, func() error {
		families, err := scrape(ctx, h.URL+"/metrics")
		if err != nil {
			return err
		}
		missing = missing[:0]
		for m, where := range used {
			if _, pending := notYetExported[familyOf(m, pendingFamilies)]; pending {
				continue
			}
			if familyOf(m, families) == "" {
				missing = append(missing, fmt.Sprintf("%s (used by %s)", m, strings.Join(where, ", ")))
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			return fmt.Errorf("not exported by a running hub:\n  %s", strings.Join(missing, "\n  "))
		}
		return nil
	})
	usedFamilies := map[string]bool{}
	for m := range used {
		usedFamilies[familyOf(m, pendingFamilies)] = true
	}
	for m := range notYetExported {
		if !usedFamilies[m] {
			t.Errorf("notYetExported lists %s, which neither the alerts nor the dashboard use", m)
		}
	}
}

// scrape returns the metric families a /metrics page declares.
func scrape(ctx context.Context, url string) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	families := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = true
		}
	}
	return families, sc.Err()
}
