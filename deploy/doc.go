// Package deploy holds the deployment kit (Helm chart, systemd unit,
// compose file, NATS cluster config, Grafana dashboard and Prometheus
// alerts). Its tests check that the kit agrees with the hub: every metric
// the dashboard and alerts use is exported, the chart's config file loads,
// and the systemd unit verifies. The chart's own strict render test lives
// in the deploy/helm module, which keeps helm and k8s.io out of the hub's
// go.mod.
package deploy
