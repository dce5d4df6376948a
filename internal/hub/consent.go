package hub

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/bus"
	"github.com/eimis-hub/eimis/internal/consent"
	"github.com/eimis-hub/eimis/internal/psc"
	"github.com/eimis-hub/eimis/internal/store"
)

// The wiring of consent (internal/consent) into the hub: Pro Santé
// Connect proofs, binding changes reaching the doors and the other
// instances, and the doors' refused binds reaching the audit trail.

// verifyPSCProof checks that a Pro Santé Connect access token given as
// proof of consent belongs to the practitioner (nil without a provider:
// such proofs are then refused).
func verifyPSCProof(p *psc.Provider) func(ctx context.Context, idNat, proof string) error {
	if p == nil {
		return nil
	}
	return func(ctx context.Context, idNat, proof string) error {
		who, err := p.IdentityFromAccessToken(ctx, proof)
		if err != nil {
			return err
		}
		if who.IDNat != idNat {
			return fmt.Errorf("the proof is for %s, not %s", who.IDNat, idNat)
		}
		return nil
	}
}

// bindingAnnouncement is a binding change as announced to the other
// instances (bus.SubjectBindings).
type bindingAnnouncement struct {
	Kind   string `json:"kind"`
	AppID  string `json:"app_id"`
	UserID string `json:"user_id"`
	Action string `json:"action"`
}

// bindingChanged is the consent service's OnChange: the change takes
// effect on this instance at once, and is announced to the others.
func (h *Hub) bindingChanged(ctx context.Context, c consent.Change) {
	a := bindingAnnouncement{Kind: c.Binding.Kind, AppID: c.Binding.AppID, UserID: c.Binding.UserID, Action: c.Action}
	h.applyBindingChange(ctx, a)
	data, _ := json.Marshal(a)
	if err := h.Bus.PublishEphemeral(bus.SubjectBindings, data); err != nil {
		h.Log.Warn("announce binding change", "err", err)
	}
}

// applyBindingChange acts on a binding change made here or on another
// instance (applying one twice changes nothing): a live bridge
// connection drops a user whose binding is gone, and the consents to
// appservices are reloaded.
func (h *Hub) applyBindingChange(ctx context.Context, a bindingAnnouncement) {
	switch a.Kind {
	case store.BindingBridge:
		if a.Action != audit.ActionBindingBind && h.Bridges != nil {
			h.Bridges.BindingRevoked(ctx, a.AppID, id.UserID(a.UserID))
		}
	case store.BindingAppservice:
		if h.Appservices != nil {
			if err := h.Appservices.ReloadConsents(ctx); err != nil {
				h.Log.Warn("reload appservice consents", "err", err)
			}
		}
	}
}
