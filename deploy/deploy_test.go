package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/eimis-hub/eimis/internal/config"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit, with
// ExecStart pointed at an existing binary (verify checks it exists), and
// fails on any complaint: verify exits 0 on an unknown key.
func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; the unit is not verified on this machine")
	}
	unit, err := os.ReadFile("systemd/eimis-hub.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=eimis"} {
		if !strings.Contains(string(unit), "\n"+want+"\n") {
			t.Errorf("unit lacks %s", want)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "eimis-hub.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/eimis-hub", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestChartConfigIsValid loads the config file the Helm chart renders
// (kept in deploy/helm/testdata by that module's golden test) with the
// hub's own loader and the environment the chart sets from its Secret.
func TestChartConfigIsValid(t *testing.T) {
	env := []string{
		"EIMIS_DATABASE=postgres://eimis:pw@db:5432/eimis",
		"EIMIS_NATS_USER=eimis-hub", "EIMIS_NATS_PASSWORD=pw",
	}
	if _, err := config.Load("helm/testdata/config.yaml", env); err != nil {
		t.Fatalf("the chart's config does not load: %v", err)
	}
}

// TestComposeAdmitsSomeone checks the compose file's shape: a load
// balancer publishing the port in front of two hubs, a directory import
// before them, and no hub reachable except through the balancer.
func TestComposeAdmitsSomeone(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image     string         `yaml:"image"`
			Command   []string       `yaml:"command"`
			Ports     []string       `yaml:"ports"`
			DependsOn map[string]any `yaml:"depends_on"`
			Env       map[string]string
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	lb, ok := c.Services["lb"]
	if !ok || len(lb.Ports) == 0 {
		t.Fatalf("no load balancer publishing a port: %+v", lb)
	}
	for _, hub := range []string{"hub-a", "hub-b"} {
		h, ok := c.Services[hub]
		if !ok {
			t.Fatalf("no service %s", hub)
		}
		if len(h.Ports) != 0 {
			t.Errorf("%s publishes %v: only the load balancer should", hub, h.Ports)
		}
		if _, ok := lb.DependsOn[hub]; !ok {
			t.Errorf("the load balancer does not wait for %s", hub)
		}
		if _, ok := h.DependsOn["directory-import"]; !ok {
			t.Errorf("%s does not wait for the directory import", hub)
		}
	}
	imp := c.Services["directory-import"]
	if strings.Join(imp.Command[:2], " ") != "directory import" {
		t.Errorf("directory-import runs %v", imp.Command)
	}
	lbConf, err := os.ReadFile("compose/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server hub-a hub-a:8008", "server hub-b hub-b:8008", "/_eimis/ready"} {
		if !strings.Contains(string(lbConf), want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
}

// TestDockerfile checks the image runs as non-root, exposes the port and
// has a health check the hub itself answers.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"\nUSER 65532:65532\n", "\nEXPOSE 8008\n", "HEALTHCHECK ", `"/eimis-hub", "healthcheck"`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// TestNATSClusterConfigParses loads the example cluster config with the
// nats-server's own parser.
func TestNATSClusterConfigParses(t *testing.T) {
	t.Setenv("NATS_EIMIS_PASSWORD", "pw")
	opts, err := server.ProcessConfigFile("nats/cluster.conf")
	if err != nil {
		t.Fatalf("nats/cluster.conf: %v", err)
	}
	if !opts.JetStream || opts.SystemAccount != "SYS" {
		t.Fatalf("cluster.conf: jetstream %v, system account %q", opts.JetStream, opts.SystemAccount)
	}
}
