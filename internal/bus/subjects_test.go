package bus

import (
	"strings"
	"testing"
)

// TestConsumerNames: durable consumer names are part of the wire format
// (a renamed durable starts afresh), so they are pinned; IDs that fold
// alike still get distinct names, and every name is a valid consumer
// name.
func TestConsumerNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{ConsumerAudit, "audit"},
		{BridgeConsumerName("acme.prod"), "eimis_bridge_c5hmqp9ee1p6up0"},
		{AppserviceConsumerName("sh.whatsapp"), "eimis-appservice-sh_whatsapp-50c876b6"},
		{AppserviceConsumerName("sh_whatsapp"), "eimis-appservice-sh_whatsapp-f0b16ab5"},
	} {
		if c.got != c.want {
			t.Errorf("consumer name %q, want %q", c.got, c.want)
		}
		if strings.ContainsAny(c.got, ".*> \t") {
			t.Errorf("%q is no valid consumer name", c.got)
		}
	}
}
