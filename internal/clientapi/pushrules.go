package clientapi

import (
	"net/http"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/identity"
)

// defaultPushRules is the spec's predefined ruleset (server-default rules),
// which clients expect to find even when the server sends no pushes yet.
func defaultPushRules(userID, localpart string) map[string]any {
	notify := func(sound bool, highlight bool) []any {
		acts := []any{"notify"}
		if sound {
			acts = append(acts, map[string]any{"set_tweak": "sound", "value": "default"})
		}
		if highlight {
			acts = append(acts, map[string]any{"set_tweak": "highlight"})
		} else {
			acts = append(acts, map[string]any{"set_tweak": "highlight", "value": false})
		}
		return acts
	}
	match := func(key, pattern string) map[string]any {
		return map[string]any{"kind": "event_match", "key": key, "pattern": pattern}
	}
	rule := func(id string, enabled bool, conds []any, actions []any) map[string]any {
		return map[string]any{"rule_id": id, "default": true, "enabled": enabled, "conditions": conds, "actions": actions}
	}
	override := []any{
		rule(".m.rule.master", false, []any{}, []any{}),
		rule(".m.rule.suppress_notices", true, []any{match("content.msgtype", "m.notice")}, []any{}),
		rule(".m.rule.invite_for_me", true, []any{
			match("type", "m.room.member"), match("content.membership", "invite"), match("state_key", userID),
		}, notify(true, false)),
		rule(".m.rule.member_event", true, []any{match("type", "m.room.member")}, []any{}),
		rule(".m.rule.is_user_mention", true, []any{
			map[string]any{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": userID},
		}, notify(true, true)),
		// Deprecated since v1.7 but part of the v1.6 ruleset the hub
		// advertises; clients that send no m.mentions rely on them.
		rule(".m.rule.contains_display_name", true, []any{
			map[string]any{"kind": "contains_display_name"},
		}, notify(true, true)),
		rule(".m.rule.is_room_mention", true, []any{
			map[string]any{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true},
			map[string]any{"kind": "sender_notification_permission", "key": "room"},
		}, notify(false, true)),
		rule(".m.rule.roomnotif", true, []any{
			match("content.body", "@room"),
			map[string]any{"kind": "sender_notification_permission", "key": "room"},
		}, notify(false, true)),
		rule(".m.rule.tombstone", true, []any{match("type", "m.room.tombstone"), match("state_key", "")}, notify(false, true)),
		rule(".m.rule.reaction", true, []any{match("type", "m.reaction")}, []any{}),
		rule(".m.rule.room.server_acl", true, []any{match("type", "m.room.server_acl"), match("state_key", "")}, []any{}),
		rule(".m.rule.suppress_edits", true, []any{
			map[string]any{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"},
		}, []any{}),
	}
	content := []any{map[string]any{
		"rule_id": ".m.rule.contains_user_name", "default": true, "enabled": true,
		"pattern": localpart, "actions": notify(true, true),
	}}
	underride := []any{
		rule(".m.rule.call", true, []any{match("type", "m.call.invite")}, []any{"notify", map[string]any{"set_tweak": "sound", "value": "ring"}, map[string]any{"set_tweak": "highlight", "value": false}}),
		rule(".m.rule.encrypted_room_one_to_one", true, []any{
			map[string]any{"kind": "room_member_count", "is": "2"}, match("type", "m.room.encrypted"),
		}, notify(true, false)),
		rule(".m.rule.room_one_to_one", true, []any{
			map[string]any{"kind": "room_member_count", "is": "2"}, match("type", "m.room.message"),
		}, notify(true, false)),
		rule(".m.rule.message", true, []any{match("type", "m.room.message")}, notify(false, false)),
		rule(".m.rule.encrypted", true, []any{match("type", "m.room.encrypted")}, notify(false, false)),
	}
	return map[string]any{"global": map[string]any{
		"override": override, "content": content, "room": []any{}, "sender": []any{}, "underride": underride,
	}}
}

// pushRules serves the ruleset or a part of it (GET /pushrules/global/…).
func (a *API) pushRules(w http.ResponseWriter, r *http.Request, s identity.Session) {
	var cur any = defaultPushRules(string(s.UserID), s.UserID.Localpart())
	rest := strings.Trim(r.PathValue("rest"), "/")
	if rest == "" {
		writeJSON(w, http.StatusOK, cur)
		return
	}
	parts := strings.Split(rest, "/")
	for _, p := range parts {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[p]
			if !ok {
				writeErr(w, mautrix.MNotFound.WithMessage("Unknown push rule path"))
				return
			}
			cur = next
		case []any:
			found := false
			for _, item := range v {
				if m, ok := item.(map[string]any); ok && m["rule_id"] == p {
					cur, found = m, true
					break
				}
			}
			if !found {
				writeErr(w, mautrix.MNotFound.WithMessage("Unknown push rule"))
				return
			}
		default:
			writeErr(w, mautrix.MNotFound.WithMessage("Unknown push rule path"))
			return
		}
	}
	if len(parts) == 4 {
		// GET …/{ruleId}/enabled or /actions answers {"enabled": …}.
		writeJSON(w, http.StatusOK, map[string]any{parts[3]: cur})
		return
	}
	writeJSON(w, http.StatusOK, cur)
}
