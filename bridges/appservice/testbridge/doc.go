// Command testbridge is a mautrix-go bridgev2 bridge (bridgev2 and its
// bridgev2/matrix appservice connector, unmodified) with a minimal network
// connector: the "remote network" is driven over a small HTTP control
// API. The hub's end-to-end test (internal/hub/appservice_test.go) builds
// and runs it to prove the Application Service API against a real bridge.
//
// It must be built with CGO_ENABLED=0 (or -tags nocrypto): with cgo,
// bridgev2's end-to-end encryption links libolm, which the hub does not
// need and CI machines do not have. Its database is SQLite through the
// pure-Go modernc.org/sqlite driver ("sqlite" for mautrix's dbutil).
//
// It prints "TESTBRIDGE <url> <registration file>", then serves the
// appservice API at <url> and the control API under <url>/_testbridge/:
//
//	POST /start                                          start the bridge (after the hub has the registration)
//	POST /login           {"mxid","login"}               log a Matrix user in to the remote network
//	POST /remote-message  {"login","portal","sender","text"}  a remote user writes in a remote chat
//	GET  /portal?login=&portal=                          the Matrix room of a remote chat
//	GET  /received                                       messages the network received from Matrix
//	POST /ghost-register  {"sender"}                     register a remote user's ghost, as bridgev2 does
package main
