package audit

import (
	"strings"

	"github.com/eimis-hub/eimis/internal/door"
	"github.com/eimis-hub/eimis/internal/operators"
)

// OperatorEntry is the entry for a change of the operator allow-list;
// ok is false for a change that is not an audited action (a row deleted
// by hand).
func OperatorEntry(c operators.Change) (e Entry, ok bool) {
	action := map[operators.Status]string{
		operators.Active:    ActionOperatorReactivate,
		operators.Suspended: ActionOperatorSuspend,
		operators.Revoked:   ActionOperatorRevoke,
	}[c.New]
	if c.Old == "" {
		action = ActionOperatorAdd
	}
	if action == "" {
		return Entry{}, false
	}
	// Changes come from the admin API (actor: the admin's user ID) or the
	// CLI (actor "cli:<user>").
	d := door.Of(door.Admin, c.Actor)
	if strings.HasPrefix(c.Actor, "cli:") {
		d = door.Of(door.CLI, strings.TrimPrefix(c.Actor, "cli:"))
	}
	return Entry{Actor: c.Actor, Action: action, Target: "operator:" + c.Operator.ID, Decision: Allow, Reason: c.Reason, Door: d.String()}, true
}
