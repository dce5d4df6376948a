package audit

import "github.com/eimis-hub/eimis/internal/operators"

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
	return Entry{Actor: c.Actor, Action: action, Target: "operator:" + c.Operator.ID, Decision: Allow, Reason: c.Reason}, true
}
