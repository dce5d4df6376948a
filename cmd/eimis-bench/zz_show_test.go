package main

import (
	"context"
	"os"
	"testing"
)

func TestZZShow(t *testing.T) {
	f := newFakeHS()
	f.drop = func(user string, seq int64) bool { return seq == 5 && user[len(user)-6] == '1' }
	url := startFake(t, f)
	t.Log(run(context.Background(), []string{"--hs", url, "--users", "4", "--rooms", "2", "--rate", "300", "--messages", "30", "--drain", "1s", "--sync-timeout", "2s", "--user-prefix", "show"}, os.Stdout, os.Stderr))
	t.Log(run(context.Background(), []string{"--hs", url, "--ramp", "100,200", "--messages", "20", "--quiet", "--sync-timeout", "2s"}, os.Stdout, os.Stderr))
}
