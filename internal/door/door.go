// Package door names where a request entered the hub: a Matrix client's
// device, a vendor's bridge, an application service, the admin API, a
// federated server, the CLI, or the hub itself. Every submission carries
// its door, so policy, rate limits and the audit trail treat all doors
// alike through this one value, and an entry in the trail always says
// which app spoke for a practitioner.
//
// It also defines the one shape of a refusal (Refusal): whichever door
// refuses, the refusal goes through one recorder, which counts it in
// eimis_policy_refusals_total{code,door} and writes an audit entry naming
// the door.
package door

import (
	"context"
	"strings"
)

// Kind is the kind of door. Its values are metric labels: a small,
// fixed set.
type Kind string

// Door kinds.
const (
	// Client is the Matrix Client-Server API; the ID is the device ID.
	Client Kind = "client"
	// Bridge is the Bridge Protocol; the ID is the bridge ID.
	Bridge Kind = "bridge"
	// Appservice is the Application Service API; the ID is the
	// registration ID.
	Appservice Kind = "appservice"
	// Admin is the admin API; the ID is the admin's user ID.
	Admin Kind = "admin"
	// Federation is the Server-Server API; the ID is the origin server.
	Federation Kind = "federation"
	// CLI is eimis-hub run by an operator on the host.
	CLI Kind = "cli"
	// Hub is the hub acting on its own (the trust keeper's removals,
	// room creation defaults).
	Hub Kind = "hub"
)

// Door is where one request entered.
type Door struct {
	Kind Kind
	// ID says which client device, bridge, appservice, admin, server.
	ID string
}

// Of returns a door.
func Of(k Kind, id string) Door { return Door{Kind: k, ID: id} }

// String is "kind:id" (or "kind" when the ID is empty), as the audit
// trail stores it.
func (d Door) String() string {
	if d.Kind == "" {
		return ""
	}
	if d.ID == "" {
		return string(d.Kind)
	}
	return string(d.Kind) + ":" + d.ID
}

// Parse reads what String wrote.
func Parse(s string) Door {
	k, id, _ := strings.Cut(s, ":")
	return Door{Kind: Kind(k), ID: id}
}

// Label is the door's metric label: its kind only, so the label set stays
// bounded whatever the number of devices or bridges.
func (d Door) Label() string {
	if d.Kind == "" {
		return "unknown"
	}
	return string(d.Kind)
}

type ctxKey struct{}

// With returns ctx carrying d.
func With(ctx context.Context, d Door) context.Context {
	return context.WithValue(ctx, ctxKey{}, d)
}

// From returns the door ctx carries (the zero Door when none).
func From(ctx context.Context) Door {
	d, _ := ctx.Value(ctxKey{}).(Door)
	return d
}

// Refusal is one refused request, at any door: metadata only, never
// content. Code is a stable code of the hub's one code table
// (schemas/codes.json, generated into internal/codes, internal/policy,
// internal/operators and bridges/gateway), never free text.
type Refusal struct {
	Door   Door
	Code   string
	Actor  string // the user (or operator) the request came from, if known
	Action string // an audit action (internal/audit), e.g. "room.invite"
	RoomID string
	Target string // who or what the action was about
	// RequestID ties the entry to proxy logs; filled from the context by
	// recorders when empty.
	RequestID string
}

// Recorder is the one path every refusal takes: it counts it and audits
// it. The hub implements it; doors hold it through this interface.
type Recorder interface {
	Refused(ctx context.Context, r Refusal)
}

// Discard is a Recorder that records nothing (tools, tests of one
// package alone).
type Discard struct{}

// Refused does nothing.
func (Discard) Refused(context.Context, Refusal) {}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request's ID.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request ID ctx carries, or "".
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(requestIDKey{}).(string)
	return s
}
