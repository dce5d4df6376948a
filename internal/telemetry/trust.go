package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// DirectoryState is what the directory gauges read at scrape time.
type DirectoryState struct {
	Entries  int   // practitioners in the in-memory index (active or not)
	Revision int64 // stored directory revision the index was built from
	// FHIRLastSuccess is the end of the last successful FHIR sync (zero:
	// none yet, or FHIR sync disabled); FHIRFailing is true while the
	// latest attempt failed, so an alert can fire on it directly.
	FHIRLastSuccess time.Time
	FHIRFailing     bool
}

// ObserveDirectory registers the directory gauges, read from state at
// every scrape. A nil *Metrics does nothing.
func (m *Metrics) ObserveDirectory(state func() DirectoryState) error {
	if m == nil {
		return nil
	}
	meter := m.provider.Meter("github.com/eimis-hub/eimis")
	entries, err1 := meter.Int64ObservableGauge("eimis.directory.entries", // eimis_directory_entries
		metric.WithDescription("Practitioners in the in-memory health directory index, active or not."))
	revision, err2 := meter.Int64ObservableGauge("eimis.directory.revision", // eimis_directory_revision
		metric.WithDescription("Stored directory revision this instance's index was built from."))
	lastOK, err3 := meter.Float64ObservableGauge("eimis.directory.fhir.last_success", // eimis_directory_fhir_last_success
		metric.WithDescription("Unix time of the last successful Annuaire Santé FHIR sync (0: none)."))
	failing, err4 := meter.Int64ObservableGauge("eimis.directory.fhir.failing", // eimis_directory_fhir_failing
		metric.WithDescription("1 while the latest FHIR sync failed (the last good directory is still served)."))
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return fmt.Errorf("telemetry: directory gauges: %w", err)
		}
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := state()
		o.ObserveInt64(entries, int64(s.Entries))
		o.ObserveInt64(revision, s.Revision)
		var ts float64
		if !s.FHIRLastSuccess.IsZero() {
			ts = float64(s.FHIRLastSuccess.UnixMilli()) / 1000
		}
		o.ObserveFloat64(lastOK, ts)
		f := int64(0)
		if s.FHIRFailing {
			f = 1
		}
		o.ObserveInt64(failing, f)
		return nil
	}, entries, revision, lastOK, failing)
	if err != nil {
		return fmt.Errorf("telemetry: directory gauges: %w", err)
	}
	return nil
}

// PolicyRefused counts a refusal by its stable code and the kind of door
// it was met at (eimis_policy_refusals_total{code,door}). Both labels come
// from fixed tables, so the series stay bounded.
func (m *Metrics) PolicyRefused(ctx context.Context, code, door string) {
	if m == nil {
		return
	}
	m.policyRefusals.Add(ctx, 1, metric.WithAttributes(attribute.String(attrCode, code), attribute.String(attrDoor, door)))
}

// MembersRemoved counts people the hub removed from a room because the
// directory withdrew their authorisation.
func (m *Metrics) MembersRemoved(ctx context.Context, n int) {
	if m == nil {
		return
	}
	m.membersRemoved.Add(ctx, int64(n))
}
