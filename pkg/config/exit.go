package config

import (
	"errors"
	"fmt"
	"io"
)

// UsageError is a command line naming no known command or flag; like a
// configuration error it exits with code 2.
type UsageError struct {
	Msg   string
	Usage string
}

func (e *UsageError) Error() string { return e.Msg + "\n" + e.Usage }

// ExitCode prints err as one line to stderr and returns the process exit
// code: 0 for nil, 2 for a configuration or usage error, 1 for anything else.
func ExitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, err)
	var cerr *Error
	var uerr *UsageError
	if errors.As(err, &cerr) || errors.As(err, &uerr) {
		return 2
	}
	return 1
}
