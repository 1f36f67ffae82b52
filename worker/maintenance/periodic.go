package maintenance

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/telemetry"
)

// Periodic runs a task every period in one replica only: each replica
// ticks, and the one that claims the period in Postgres runs it. A run
// (claim included) has a deadline of 8/10 of the period, below the 9/10
// the claim lasts: a run that hangs is cut off before the next period, and
// never keeps another replica from claiming it.
type Periodic struct {
	name   string
	span   string // the span of a run, with tracing on
	every  time.Duration
	run    func(ctx context.Context) error
	store  *store.Store
	logger *slog.Logger

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// NewPeriodic returns the periodic task name, which runs run every period,
// claimed in st.
func NewPeriodic(name string, every time.Duration, st *store.Store, logger *slog.Logger, run func(context.Context) error) *Periodic {
	return &Periodic{name: name, span: "periodic " + name, every: every, run: run, store: st, logger: logger.With("task", name),
		stop: make(chan struct{}), done: make(chan struct{})}
}

// Start runs the task's loop until Stop or ctx ends.
func (p *Periodic) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-p.stop
		cancel()
	}()
	go func() {
		defer close(p.done)
		defer cancel()
		ticker := time.NewTicker(p.every)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				p.tick(ctx)
			}
		}
	}()
	return nil
}

func (p *Periodic) tick(stop context.Context) {
	deadline := p.every * 8 / 10
	ctx, cancel := context.WithTimeout(stop, deadline)
	defer cancel()
	// Claim a little less than a period, so that tick jitter skips none.
	claimed, err := p.store.ClaimPeriodic(ctx, p.name, p.every*9/10)
	if err != nil {
		if stop.Err() == nil {
			p.logger.Warn("could not claim the periodic run", "error", err)
		}
		return
	}
	if !claimed {
		return
	}
	// With tracing on, each claimed run is a trace of its own.
	ctx, span := telemetry.Start(ctx, p.span, trace.SpanKindInternal)
	defer span.End()
	err = p.run(ctx)
	if stop.Err() == nil {
		telemetry.Fail(span, err)
	}
	switch {
	case err == nil || stop.Err() != nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		p.logger.WarnContext(ctx, "periodic run cut off at its deadline; the next period runs it again", "deadline", deadline.String(), "error", err)
	default:
		p.logger.WarnContext(ctx, "periodic run failed", "error", err)
	}
}

// Stop ends the loop, waiting for a run in progress; calling it again is a no-op.
func (p *Periodic) Stop() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}
