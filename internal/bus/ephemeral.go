package bus

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// PublishEphemeral sends data on a core-NATS subject under the ephemeral
// root (see EphemeralSubject). Delivery is at-most-once and only reaches
// instances subscribed at that moment, which is what typing notifications
// and similar short-lived signals want.
func (b *Bus) PublishEphemeral(subject string, data []byte) error {
	if !isEphemeralSubject(subject) {
		return fmt.Errorf("bus: %q is not an ephemeral subject", subject)
	}
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("bus: publish %s: %w", subject, err)
	}
	return nil
}

// SubscribeEphemeral calls fn with the payload of every message on subject
// (wildcards allowed, but only under the ephemeral root) until unsubscribe
// is called. fn runs on one NATS delivery goroutine per subscription, so
// calls are sequential.
func (b *Bus) SubscribeEphemeral(subject string, fn func([]byte)) (unsubscribe func(), err error) {
	if !isEphemeralSubject(subject) {
		return nil, fmt.Errorf("bus: %q is not an ephemeral subject", subject)
	}
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", subject, err)
	}
	return func() {
		// Unsubscribing a subscription already gone with the connection
		// is not an error the caller can act on.
		_ = sub.Unsubscribe()
	}, nil
}
