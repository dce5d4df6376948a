//go:build cgo && !nocrypto

package main

import (
	"fmt"
	"os"
)

// With cgo, bridgev2's encryption support needs libolm: this program is
// only meant to be built with CGO_ENABLED=0 (see doc.go).
func main() {
	fmt.Fprintln(os.Stderr, "testbridge: build with CGO_ENABLED=0 (or -tags nocrypto)")
	os.Exit(2)
}
