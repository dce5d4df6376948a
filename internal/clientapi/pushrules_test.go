package clientapi

import (
	"testing"
)

// TestDefaultPushRules checks the predefined rules of the v1.6 ruleset
// are all present, in the spec's order for override rules.
func TestDefaultPushRules(t *testing.T) {
	rs := defaultPushRules("@alice:hub.test", "alice")["global"].(map[string]any)
	ids := func(kind string) []string {
		var out []string
		for _, r := range rs[kind].([]any) {
			out = append(out, r.(map[string]any)["rule_id"].(string))
		}
		return out
	}
	wantOverride := []string{".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
		".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention", ".m.rule.roomnotif",
		".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"}
	got := ids("override")
	if len(got) != len(wantOverride) {
		t.Fatalf("override = %v", got)
	}
	for i := range got {
		if got[i] != wantOverride[i] {
			t.Fatalf("override[%d] = %s, want %s", i, got[i], wantOverride[i])
		}
	}
	if u := ids("underride"); len(u) != 5 || u[len(u)-1] != ".m.rule.encrypted" {
		t.Fatalf("underride = %v", u)
	}
	content := rs["content"].([]any)[0].(map[string]any)
	if content["pattern"] != "alice" {
		t.Fatalf("contains_user_name pattern = %v", content["pattern"])
	}
}
