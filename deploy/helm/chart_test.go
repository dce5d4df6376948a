// Package helm checks the hub's Helm chart without a cluster and without a
// helm binary: the chart is linted and rendered in-process with the helm
// library, and every rendered manifest is decoded strictly into the
// Kubernetes API types, so a misspelled or misplaced field fails here
// instead of being silently dropped by the API server. The alert rules and
// dashboard queries of deploy/monitoring are parsed here too, with
// Prometheus's own parser (monitoring_test.go), for the same reason: the
// heavy modules stay out of the hub's go.mod.
package helm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "eimis-hub"

// required are the values without which the chart refuses to render.
var required = map[string]any{
	"secrets": map[string]any{
		"databaseURL": "postgres://eimis:pw@db:5432/eimis?sslmode=verify-full",
		"signingKey":  "ed25519 a_test AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	},
}

// kinds maps each kind the chart may render to a fresh typed object.
var kinds = map[string]func() any{
	"ConfigMap":           func() any { return &corev1.ConfigMap{} },
	"Secret":              func() any { return &corev1.Secret{} },
	"Service":             func() any { return &corev1.Service{} },
	"Deployment":          func() any { return &appsv1.Deployment{} },
	"PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
	"ServiceMonitor":      func() any { return &monitoringv1.ServiceMonitor{} },
}

func merge(dst, src map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = merge(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// render renders the chart with vals over its defaults, as `helm template`
// does, and returns the manifests by template name.
func render(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		t.Fatalf("dependencies: %v", err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: "eimis", Namespace: "eimis", Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	return engine.Render(ch, rv)
}

type manifest struct {
	source string
	kind   string
	obj    any
}

// decodeStrict splits the rendered files into documents and decodes each
// into its Kubernetes type, rejecting unknown fields.
func decodeStrict(t *testing.T, files map[string]string) []manifest {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []manifest
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for i, doc := range strings.Split(files[name], "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			src := fmt.Sprintf("%s#%d", name, i)
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Errorf("%s: not YAML: %v\n%s", src, err, doc)
				continue
			}
			if string(js) == "null" {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := json.Unmarshal(js, &meta); err != nil {
				t.Errorf("%s: %v", src, err)
				continue
			}
			mk, ok := kinds[meta.Kind]
			if !ok {
				t.Errorf("%s: kind %q (%s) has no type in this test; add it to kinds", src, meta.Kind, meta.APIVersion)
				continue
			}
			obj := mk()
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(obj); err != nil {
				t.Errorf("%s: %s does not decode strictly: %v\n%s", src, meta.Kind, err, doc)
				continue
			}
			out = append(out, manifest{src, meta.Kind, obj})
		}
	}
	return out
}

func TestChartLint(t *testing.T) {
	linter := lint.All(chartDir, required, "eimis", false)
	for _, m := range linter.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m)
		}
	}
}

func TestChartRendersStrictly(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vals  map[string]any
		kinds []string
	}{
		{"defaults", required, []string{"ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceMonitor"}},
		{"existing secret, NATS TLS, shared media, no monitoring", map[string]any{
			"replicaCount":        3,
			"secrets":             map[string]any{"existingSecret": "eimis-secrets"},
			"natsTLS":             map[string]any{"secretName": "eimis-nats-tls"},
			"media":               map[string]any{"existingClaim": "eimis-media"},
			"serviceMonitor":      map[string]any{"enabled": false},
			"podDisruptionBudget": map[string]any{"enabled": false},
		}, []string{"ConfigMap", "Deployment", "Service"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := render(t, tc.vals)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			ms := decodeStrict(t, files)
			var got []string
			for _, m := range ms {
				got = append(got, m.kind)
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tc.kinds, ",") {
				t.Fatalf("rendered kinds %v, want %v", got, tc.kinds)
			}
			for _, m := range ms {
				switch o := m.obj.(type) {
				case *appsv1.Deployment:
					checkDeployment(t, o, merge(required, tc.vals))
				case *corev1.ConfigMap:
					checkConfig(t, o, tc.vals)
				}
			}
		})
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, vals map[string]any) {
	t.Helper()
	if want, ok := vals["replicaCount"].(int); ok && (d.Spec.Replicas == nil || int(*d.Spec.Replicas) != want) {
		t.Errorf("replicas = %v, want %d", d.Spec.Replicas, want)
	}
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	c := cs[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/_eimis/ready" {
		t.Errorf("readiness probe %+v, want GET /_eimis/ready", c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/_eimis/health" {
		t.Errorf("liveness probe %+v, want GET /_eimis/health", c.LivenessProbe)
	}
	env := map[string]*corev1.EnvVarSource{}
	for _, e := range c.Env {
		if e.Value != "" {
			t.Errorf("env %s carries a literal value; secrets come from the Secret", e.Name)
		}
		env[e.Name] = e.ValueFrom
	}
	if src := env["EIMIS_DATABASE"]; src == nil || src.SecretKeyRef == nil {
		t.Errorf("EIMIS_DATABASE does not come from a Secret: %+v", src)
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container may escalate privileges: %+v", sc)
	}
}

// checkConfig decodes the generated config file and makes sure the chart
// wrote what the values said.
func checkConfig(t *testing.T, cm *corev1.ConfigMap, vals map[string]any) {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	for _, k := range []string{"server_name", "nats", "signing_key_path", "listen"} {
		if cfg[k] == nil {
			t.Errorf("config.yaml lacks %s:\n%s", k, cm.Data["config.yaml"])
		}
	}
	if tls, _ := vals["natsTLS"].(map[string]any); tls != nil && cfg["nats_ca_file"] == nil {
		t.Errorf("natsTLS set but config.yaml has no nats_ca_file")
	}
}

func TestChartRefusesWithoutSecrets(t *testing.T) {
	_, err := render(t, map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "secrets.databaseURL") {
		t.Fatalf("render without a database URL: err = %v, want the required-value message", err)
	}
}

// TestChartConfigGolden keeps testdata/config.yaml equal to the config
// file the chart renders with its defaults; the main module's
// deploy.TestChartConfigIsValid loads that file with the hub's own config
// loader, so a key the hub does not know fails there. Regenerate with
// EIMIS_UPDATE_GOLDEN=1.
func TestChartConfigGolden(t *testing.T) {
	files, err := render(t, required)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, m := range decodeStrict(t, files) {
		if cm, ok := m.obj.(*corev1.ConfigMap); ok {
			got = cm.Data["config.yaml"]
		}
	}
	const golden = "testdata/config.yaml"
	if os.Getenv("EIMIS_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("rendered config.yaml differs from %s (EIMIS_UPDATE_GOLDEN=1 to update):\n%s", golden, got)
	}
}
