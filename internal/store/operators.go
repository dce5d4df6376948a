package store

// OperatorStore persists the operator allow-list (owned by the operators work).
type OperatorStore interface{}
