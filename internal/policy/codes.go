package policy

// Clients and bridges branch on Code (stable, never renumbered or
// reworded); people read the message. The codes and their messages are
// generated (codes_gen.go) from the hub's one table, schemas/codes.json:
// add a code there, at the end, and run `go generate ./internal/codes`.

// Code is a stable refusal code, sent as `eimis_code` beside the Matrix
// error (M_FORBIDDEN for most; internal/codes has each code's status and
// errcode).
type Code string
