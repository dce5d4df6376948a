package storetest

import (
	"testing"

	"github.com/eimis-hub/eimis/internal/store"
)

var operatorTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{}
