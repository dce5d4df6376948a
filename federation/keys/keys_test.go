package keys

import (
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/signingkey"
)

// The hub's own response is self-signed, and countersigning a peer's
// response keeps the peer's signature valid and adds a valid one.
func TestOwnAndCountersign(t *testing.T) {
	own, _ := signingkey.Generate()
	peer, _ := signingkey.Generate()
	s := &Server{ServerName: "hub.test", Key: own}
	resp := s.Own()
	raw, _ := json.Marshal(resp)
	var back federation.ServerKeyResponse
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.VerifySelfSignature(); err != nil {
		t.Fatalf("own response: %v", err)
	}

	psk := &federation.SigningKey{ID: id.KeyID(peer.ID), Pub: id.SigningKey(peer.PublicBase64()), Priv: peer.Private}
	peerRaw, _ := json.Marshal(psk.GenerateKeyResponse("peer.test", nil))
	signed, err := s.countersign(peerRaw)
	if err != nil {
		t.Fatal(err)
	}
	if err := signutil.VerifyJSON("peer.test", psk.ID, psk.Pub, signed); err != nil {
		t.Fatalf("origin signature lost: %v", err)
	}
	if err := signutil.VerifyJSON("hub.test", id.KeyID(own.ID), id.SigningKey(own.PublicBase64()), signed); err != nil {
		t.Fatalf("notary signature: %v", err)
	}
}
