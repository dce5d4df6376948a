package hub

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/eimis-hub/eimis/bridges/gateway"
	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/clientapi"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/media"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/ratelimit"
	"github.com/eimis-hub/eimis/internal/store"
)

// setLimits builds this instance's rate limits (in memory: per instance)
// and gives them to the Client-Server API.
func (h *Hub) setLimits(cfg config.Config, api *clientapi.API) error {
	rc, err := cfg.Limits()
	if err != nil {
		return err
	}
	h.Limits = ratelimit.New(rc)
	api.SetLimits(h.Limits)
	return nil
}

// bridgeActions are the Bridge Protocol requests under an operator limit,
// with the audit action of a refusal. Others (typing, receipts, bind,
// leave, room_info) are not limited.
var bridgeActions = map[string]struct {
	limit  ratelimit.Action
	action string
}{
	"send":             {ratelimit.OperatorMessage, audit.ActionEventSend},
	"edit":             {ratelimit.OperatorMessage, audit.ActionEventSend},
	"join":             {ratelimit.OperatorMembership, audit.ActionRoomJoin},
	"invite":           {ratelimit.OperatorMembership, audit.ActionRoomInvite},
	"create_room":      {ratelimit.OperatorMembership, audit.ActionRoomCreate},
	"upload":           {ratelimit.OperatorMedia, "media.upload"},
	"directory_search": {ratelimit.OperatorSearch, "directory.search"},
}

// bridgeLimits limits each bridge by its operator limits (gateway.RateLimiter).
type bridgeLimits struct{ h *Hub }

func (b bridgeLimits) Allow(ctx context.Context, br *store.Bridge, frameType string) (time.Duration, bool) {
	a, ok := bridgeActions[frameType]
	if !ok {
		return 0, true
	}
	d := b.h.Limits.Allow(a.limit, "bridge:"+br.ID, 1)
	if d.OK {
		return 0, true
	}
	if d.First {
		// Once per limited episode: see clientapi's decide.
		b.h.Refusals.Refused(ctx, door.Refusal{Door: door.Of(door.Bridge, br.ID), Code: string(policy.RateLimited),
			Actor: "operator:" + br.OperatorID, Action: a.action})
	}
	return d.RetryAfter, false
}

// uploadGate applies the upload limits to the media repository: a
// bridge's upload over HTTP (bridge token) counts against its operator,
// anything else against the user or appservice, as in the Client-Server
// API.
func (h *Hub) uploadGate(api *clientapi.API) media.UploadGate {
	return func(r *http.Request, _ string) error {
		if tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "); strings.HasPrefix(tok, gateway.TokenPrefix) {
			if h.Limits.Limiter(ratelimit.OperatorMedia) == nil {
				return nil
			}
			br, err := h.Store.BridgeByTokenHash(r.Context(), gateway.HashToken(tok))
			if err != nil {
				return err
			}
			if retry, ok := (bridgeLimits{h}).Allow(r.Context(), br, "upload"); !ok {
				return clientapi.LimitExceeded(retry)
			}
			return nil
		}
		return api.LimitUpload(r)
	}
}
