package maintenance

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// A periodic run that hangs is cut off by a deadline below its interval,
// and the periods after it run (on either replica).
func TestPeriodicRunHasADeadlineBelowItsInterval(t *testing.T) {
	t.Parallel()
	st, err := store.Open(testenv.Database(t, ""), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	const every = 400 * time.Millisecond

	var (
		mu        sync.Mutex
		runs      int
		hungFor   time.Duration // how long the hanging run lasted; 0 while it runs
		hungHadDL bool
	)
	run := func(ctx context.Context) error {
		mu.Lock()
		runs++
		first := runs == 1
		mu.Unlock()
		if !first {
			return nil
		}
		// The first run hangs, as on a stuck backend, until its context ends.
		began := time.Now()
		_, hungHadDL = ctx.Deadline()
		<-ctx.Done()
		mu.Lock()
		hungFor = time.Since(began)
		mu.Unlock()
		return ctx.Err()
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var replicas []*Periodic
	for range 2 {
		p := NewPeriodic("test-task", every, st, logger, run)
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, p)
	}
	defer func() {
		for _, p := range replicas {
			p.Stop()
		}
	}()

	testenv.Eventually(t, 10*every, "the hanging run to be cut off", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return hungFor > 0
	})
	mu.Lock()
	if !hungHadDL || hungFor >= every {
		t.Errorf("the hanging run lasted %s (deadline set: %v), want a deadline below the %s interval", hungFor, hungHadDL, every)
	}
	mu.Unlock()
	// Periods go on after the cut-off, on one replica or the other.
	testenv.Eventually(t, 10*every, "three more periodic runs", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return runs >= 4
	})
}
