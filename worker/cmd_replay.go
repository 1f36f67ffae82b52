package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/replay"
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
	flushTraces, err := setupTracing(ctx, logger)
	if err != nil {
		return err
	}
	defer flushTraces()
	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: 2, Logger: logger})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, end := commandSpan(ctx, "replay")
	err = replayChosen(ctx, st, cfg.Livemode, logger, stdout, *eventID, replayFilter(*since, *failed, *eventType))
	end(err)
	return err
}

// replayChosen replays the event eventID, or else those f selects, logs
// each and prints how many; an error if any failed.
func replayChosen(ctx context.Context, st *store.Store, mode config.Livemode, logger *slog.Logger, stdout io.Writer,
	eventID string, f replay.Filter) error {
	r := replay.New(st, mode)
	var replayed, failures int
	count := func(res replay.Result) {
		log := logger.With("stripe_event_id", res.StripeEventID, "event_type", res.EventType, "webhook_id", res.WebhookID)
		switch res.Outcome {
		case replay.Applied:
			replayed++
			log.InfoContext(ctx, "event replayed")
		case replay.Failed:
			failures++
			log.ErrorContext(ctx, "replay failed", "error", res.Err)
		}
	}
	if eventID != "" {
		if err := replayOne(ctx, r, eventID, mode, count); err != nil {
			return err
		}
	} else if err := r.Matching(ctx, f, count); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d events, %d failed\n", replayed, failures)
	if failures > 0 {
		return errors.New("worker replay: some events failed; their error is on the row (see the log above)")
	}
	return nil
}

// replayOne replays the event id, handing a replay's result to count; an
// event not stored, or of the other mode, is an error.
func replayOne(ctx context.Context, r *replay.Replayer, id string, mode config.Livemode, count func(replay.Result)) error {
	res := r.Event(ctx, id)
	switch res.Outcome {
	case replay.NotFound:
		return fmt.Errorf("worker replay: no stored event %s", id)
	case replay.OtherMode:
		return fmt.Errorf("worker replay: event %s is of the mode STRIPE_LIVEMODE=%s never applies", id, mode.Mode)
	case replay.Applied, replay.Failed:
		count(res)
		return nil
	}
	return res.Err
}

// replayFilter is the filter of --since or --failed, with --type.
func replayFilter(since time.Duration, failed bool, eventType string) replay.Filter {
	f := replay.Filter{Failed: failed, EventType: eventType}
	if since > 0 {
		f.Since = time.Now().Add(-since)
	}
	return f
}
