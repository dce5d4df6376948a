package bus

import (
	"context"
	"fmt"
	"strings"
)

// ConsumerLag is how far one kind of durable consumer is behind the event
// stream, summed over the consumers of that kind.
type ConsumerLag struct {
	// Kind is "audit", "bridge", "appservice" or "other": a bounded label,
	// never a bridge's own name.
	Kind string
	// Pending is the number of stream messages not yet delivered;
	// AckPending those delivered and not yet acknowledged.
	Pending, AckPending int64
}

// Lag lists the event stream's durable consumers' backlog by kind.
func (b *Bus) Lag(ctx context.Context) ([]ConsumerLag, error) {
	byKind := map[string]*ConsumerLag{}
	var order []string
	lister := b.stream.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable == "" {
			continue // the instances' ordered watchers
		}
		k := consumerKind(ci.Name)
		l, ok := byKind[k]
		if !ok {
			l = &ConsumerLag{Kind: k}
			byKind[k] = l
			order = append(order, k)
		}
		l.Pending += int64(ci.NumPending)
		l.AckPending += int64(ci.NumAckPending)
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("bus: list consumers: %w", err)
	}
	out := make([]ConsumerLag, 0, len(order))
	for _, k := range order {
		out = append(out, *byKind[k])
	}
	return out, nil
}

func consumerKind(name string) string {
	switch {
	case name == ConsumerAudit:
		return "audit"
	case strings.HasPrefix(name, bridgeConsumerPrefix):
		return "bridge"
	case strings.HasPrefix(name, appserviceConsumerPrefix):
		return "appservice"
	}
	return "other"
}
