package main

import (
	"errors"
	"io"
)

// auditMain runs `eimis-hub audit …` (args after "audit").
func auditMain(args []string, stdout, stderr io.Writer) error {
	return errors.New("audit: not implemented yet")
}
