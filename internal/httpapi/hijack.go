package httpapi

import (
	"bufio"
	"net"
	"net/http"
)

// Hijackable lets a handler take over w's connection (a WebSocket
// upgrade) through the middleware in front of it (metrics, request IDs),
// whose writers do not implement http.Hijacker themselves but unwrap to
// one that does, as http.ResponseController expects.
func Hijackable(w http.ResponseWriter) http.ResponseWriter { return hijackable{w} }

type hijackable struct{ http.ResponseWriter }

func (h hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(h.ResponseWriter).Hijack()
}

// Unwrap gives http.ResponseController the writer underneath.
func (h hijackable) Unwrap() http.ResponseWriter { return h.ResponseWriter }
