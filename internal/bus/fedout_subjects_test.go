package bus

import (
	"strings"
	"testing"
)

func TestFedOutNames(t *testing.T) {
	for _, dest := range []string{"hub.example", "127.0.0.1:8448", "[::1]:8448", "a-b.c_d.example"} {
		for _, subj := range []string{FedOutSubject(dest, FedOutKindPDU), FedOutSubject(dest, FedOutKindEDU), FedOutEphemeralSubject(dest)} {
			got, err := DestFromFedOutSubject(subj)
			if err != nil || got != dest {
				t.Errorf("DestFromFedOutSubject(%q) = %q, %v; want %q", subj, got, err, dest)
			}
			if strings.Count(subj, ".") != strings.Count(FedOutSubject("x", "pdu"), ".") && !strings.HasPrefix(subj, ephemeralPrefix) {
				t.Errorf("%q: the destination split into several tokens", subj)
			}
		}
		if !isEphemeralSubject(FedOutEphemeralSubject(dest)) {
			t.Errorf("%q is not ephemeral", FedOutEphemeralSubject(dest))
		}
		name := FedOutConsumerName(dest)
		if strings.ContainsAny(name, ".*> ") {
			t.Errorf("consumer name %q has forbidden characters", name)
		}
	}
	if _, err := DestFromFedOutSubject(EventSubject("!r:hub")); err == nil {
		t.Error("an event subject was taken for a queue subject")
	}
}
