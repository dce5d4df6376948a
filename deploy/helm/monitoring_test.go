package helm

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// TestAlertRulesParse checks deploy/monitoring/alerts.yaml with the rule
// parser promtool's `check rules` uses (rule file shape, PromQL, templates).
func TestAlertRulesParse(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile("../monitoring/alerts.yaml", false, model.UTF8Validation, p, nil)
	for _, err := range errs {
		t.Error(err)
	}
	if groups != nil && len(groups.Groups) == 0 {
		t.Error("no rule groups")
	}
}

// TestDashboardQueriesParse checks every query of the Grafana dashboard is
// valid PromQL.
func TestDashboardQueriesParse(t *testing.T) {
	b, err := os.ReadFile("../monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	n := 0
	for _, panel := range dash.Panels {
		for _, tg := range panel.Targets {
			n++
			if _, err := p.ParseExpr(tg.Expr); err != nil {
				t.Errorf("panel %q: %q: %v", panel.Title, tg.Expr, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no queries in the dashboard")
	}
}
