package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	if code, _, stderr := runCLI(t, "healthcheck", "--url", srv.URL); code != 0 {
		t.Fatalf("ready hub: exit %d, %s", code, stderr)
	}
	status = http.StatusServiceUnavailable
	if code, _, _ := runCLI(t, "healthcheck", "--url", srv.URL); code == 0 {
		t.Fatal("a hub answering 503 passed the health check")
	}
}
