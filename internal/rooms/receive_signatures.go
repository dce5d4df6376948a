package rooms

import (
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
)

// KeyFunc returns a server's public signing key (the federation key
// client's job): the key valid until at least minValidUntil, and until
// when it is valid.
type KeyFunc func(serverName string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error)

// checkSignatures is step 2: the sender's server signed the event; then
// the content hash. An event whose hash does not match is kept in its
// redacted form, as the spec says (its signature covers that form).
func (s *Server) checkSignatures(in *inbound) error {
	server := in.pdu.Sender.Homeserver()
	getKey := s.cfg.getKey
	if server != s.cfg.ServerName {
		if s.cfg.RemoteKeys == nil {
			return fmt.Errorf("%w: no key source for %s", ErrBadSignature, server)
		}
		getKey = s.cfg.RemoteKeys
	}
	if err := in.pdu.VerifySignature(in.version, server, getKey); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if !in.pdu.VerifyContentHash() {
		in.pdu = in.pdu.Redact(in.version)
	}
	return nil
}
