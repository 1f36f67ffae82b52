package maintenance

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
)

// DeadSetSize is how many dead jobs are kept (the original design's
// removeOnFail: 1000); the event rows keep their error regardless.
const DeadSetSize = 1000

// trimEvery is how often the dead set is trimmed.
const trimEvery = 30 * time.Second

// DeadSetTrimmer keeps only the newest DeadSetSize jobs of a namespace's
// dead set, trimming it every 30 s. Every replica trims; the command is
// idempotent and cheap.
type DeadSetTrimmer struct {
	logger    *slog.Logger
	pool      *redis.Pool
	namespace string

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewDeadSetTrimmer returns a trimmer of namespace's dead set.
func NewDeadSetTrimmer(logger *slog.Logger, pool *redis.Pool, namespace string) *DeadSetTrimmer {
	return &DeadSetTrimmer{logger: logger.With("task", "dead-set"), pool: pool, namespace: namespace}
}

// Start trims every 30 s until Stop or ctx ends.
func (d *DeadSetTrimmer) Start(ctx context.Context) error {
	ctx, d.cancel = context.WithCancel(ctx)
	d.done = make(chan struct{})
	go func() {
		defer close(d.done)
		tick := time.NewTicker(trimEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				d.Trim(ctx)
			}
		}
	}()
	return nil
}

// Trim trims the dead set once, within 10 s.
func (d *DeadSetTrimmer) Trim(ctx context.Context) {
	trimCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := queue.TrimDead(trimCtx, d.pool, d.namespace, DeadSetSize)
	switch {
	case err != nil && ctx.Err() == nil: // not when shutting down
		d.logger.Warn("could not trim the dead set", "error", err)
	case n > 0:
		d.logger.Info("trimmed the dead set", "removed", n, "kept", DeadSetSize)
	}
}

// Stop ends the trimming and waits for it; calling it again, or before
// Start, is a no-op.
func (d *DeadSetTrimmer) Stop() {
	d.stopOnce.Do(func() {
		if d.cancel == nil {
			return
		}
		d.cancel()
		<-d.done
	})
}
