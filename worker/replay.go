package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/handler"
)

// runReplay applies chosen events again, in this process, under the same
// row lock the workers take, so it is safe while they run. Handlers keep
// their out-of-order guards: a replay never overwrites newer state.
func runReplay(ctx context.Context, args []string, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	eventID := fs.String("event", "", "replay this event (evt_…)")
	since := fs.Duration("since", 0, "replay events stored within this long, such as 24h")
	failed := fs.Bool("failed", false, "replay events that exhausted their retries")
	eventType := fs.String("type", "", "with --since or --failed: only events of this type")
	if err := fs.Parse(args); err != nil {
		return &config.UsageError{Msg: "worker replay: " + err.Error(), Usage: usage}
	}
	chosen := 0
	for _, set := range []bool{*eventID != "", *since != 0, *failed} {
		if set {
			chosen++
		}
	}
	switch {
	case fs.NArg() > 0:
		return &config.UsageError{Msg: fmt.Sprintf("worker replay: unexpected arguments %q", fs.Args()), Usage: usage}
	case chosen != 1:
		return &config.UsageError{Msg: "worker replay: give exactly one of --event, --since, --failed", Usage: usage}
	case *since < 0:
		return &config.UsageError{Msg: "worker replay: --since must be positive", Usage: usage}
	case *eventType != "" && *eventID != "":
		return &config.UsageError{Msg: "worker replay: --type goes with --since or --failed", Usage: usage}
	}
	cfg, err := config.LoadAdmin(environ)
	if err != nil {
		return err
	}
	logger := cfg.Log.Logger(stdout)
	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: 2, Logger: logger})
	if err != nil {
		return err
	}
	defer st.Close()

	filter := store.ReplayFilter{StripeEventID: *eventID, Failed: *failed, EventType: *eventType}
	switch cfg.Livemode.Mode { // events of the other mode are never applied
	case "live":
		filter.Livemode = &[]bool{true}[0]
	case "test":
		filter.Livemode = &[]bool{false}[0]
	}
	if *since > 0 {
		filter.Since = time.Now().Add(-*since)
	}
	var replayed, failures int
	cursor := store.Cursor{}
	for {
		refs, err := st.ReplayBatch(ctx, filter, cursor, 500)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			jobCtx, cancel := context.WithTimeout(ctx, time.Minute)
			_, _, err := st.ReplayEvent(jobCtx, r.WebhookID, handler.ApplyIn(cfg.Livemode))
			cancel()
			log := logger.With("stripe_event_id", r.StripeEventID, "event_type", r.EventType, "webhook_id", r.WebhookID)
			if err != nil {
				failures++
				log.Error("replay failed", "error", err)
				continue
			}
			replayed++
			log.Info("event replayed")
		}
		if len(refs) < 500 {
			break
		}
		cursor = store.Next(refs)
	}
	if *eventID != "" && replayed+failures == 0 {
		if row, err := st.EventByStripeID(ctx, *eventID); err == nil && row.Livemode != nil && !cfg.Applies(*row.Livemode) {
			return fmt.Errorf("worker replay: event %s is of the mode STRIPE_LIVEMODE=%s never applies", *eventID, cfg.Livemode.Mode)
		}
		return fmt.Errorf("worker replay: no stored event %s", *eventID)
	}
	fmt.Fprintf(stdout, "replayed %d events, %d failed\n", replayed, failures)
	if failures > 0 {
		return errors.New("worker replay: some events failed; their error is on the row (see the log above)")
	}
	return nil
}
