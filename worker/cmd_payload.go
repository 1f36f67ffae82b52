package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"gorm.io/gorm"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
)

// runPayload writes the stored payload of one event to stdout exactly as
// Stripe delivered it: the table holds it compressed (pkg/payload), which
// plain SQL cannot read.
func runPayload(ctx context.Context, args []string, environ []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] == "" || args[0][0] == '-' {
		return &config.UsageError{Msg: "worker payload: give one Stripe event id (evt_…)", Usage: usage}
	}
	cfg, err := config.LoadAdmin(environ)
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: 1, Logger: cfg.Log.Logger(io.Discard)})
	if err != nil {
		return err
	}
	defer st.Close()
	e, err := st.EventByStripeID(ctx, args[0])
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("worker payload: no stored event %s", args[0])
	}
	if err != nil {
		return fmt.Errorf("worker payload: %w", err)
	}
	_, err = stdout.Write(e.Payload)
	return err
}
