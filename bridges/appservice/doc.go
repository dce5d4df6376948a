// Package appservice is the hub's side of the Matrix Application Service
// API: registrations (parsed, validated, stored), as_token authentication
// with masquerading, the ping, and the pusher that delivers events to
// each appservice in transactions. Appservice users are subject to the
// trust space: a user of an exclusive namespace is the puppet of a
// practitioner of the directory (policy.PuppetNamespace), and the
// appservice's own accounts are applicative service accounts under a
// responsible practitioner.
//
// README.md says how to operate it, what is guaranteed (delivery at least
// once, in stream order) and what is not done yet.
package appservice
