package main

import (
	"errors"
	"io"
)

// operatorMain runs `eimis-hub operator …` (args after "operator").
func operatorMain(args []string, stdout, stderr io.Writer) error {
	return errors.New("operator: not implemented yet")
}
