package main

import (
	"context"
	"os"

	"stripe-webhooks/pkg/config"
)

func main() {
	err := run(context.Background(), os.Args, os.Environ(), os.Stdout, os.Stderr)
	os.Exit(config.ExitCode(err, os.Stderr))
}
