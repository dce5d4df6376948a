package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestRegistrationMAC(t *testing.T) {
	// Independent computation of the documented construction.
	m := hmac.New(sha1.New, []byte("shared-secret"))
	m.Write([]byte("nonce123\x00alice\x00hunter2\x00notadmin"))
	want := hex.EncodeToString(m.Sum(nil))
	got := registrationMAC("shared-secret", "nonce123", "alice", "hunter2", false)
	if got != want {
		t.Errorf("registrationMAC = %s, want %s", got, want)
	}
	// Fixed vectors (computed with Python's hmac module) guard against the
	// construction above and the implementation sharing a mistake.
	if got != "bbf836e354cab830484e6839261e86e484420907" {
		t.Errorf("registrationMAC notadmin = %s", got)
	}
	if got := registrationMAC("shared-secret", "nonce123", "alice", "hunter2", true); got != "7ba4648c05a370b7856aee0e602710c92157a544" {
		t.Errorf("registrationMAC admin = %s", got)
	}
}

func TestMessageBody(t *testing.T) {
	var got map[string]any
	if err := json.Unmarshal(messageBody("run1", 42), &got); err != nil {
		t.Fatal(err)
	}
	if got["msgtype"] != "m.text" || got["body"] != "bench run1 42" {
		t.Errorf("body = %v", got)
	}
	tag, _ := got["eimis.bench"].(map[string]any)
	if tag["run"] != "run1" || tag["seq"] != float64(42) {
		t.Errorf("eimis.bench = %v", got["eimis.bench"])
	}
}

func TestFailureKey(t *testing.T) {
	cases := map[string]error{
		"429":       &matrixError{Status: 429, Code: "M_LIMIT_EXCEEDED"},
		"timeout":   &matrixError{cause: fmt.Errorf("dial: %w", context.DeadlineExceeded)},
		"transport": &matrixError{cause: errors.New("connection refused")},
	}
	for want, err := range cases {
		if got := failureKey(err); got != want {
			t.Errorf("failureKey(%v) = %q, want %q", err, got, want)
		}
	}
}
