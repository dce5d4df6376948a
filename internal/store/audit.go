package store

// AuditStore persists the audit trail (owned by the audit work).
type AuditStore interface{}
