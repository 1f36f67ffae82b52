package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// processorFor is a Processor over b's database whose events are applied
// by apply, one at a time, with maxFails attempts of timeout each, putting
// jobs back and killing them through b's namespace.
func processorFor(t *testing.T, b *testkit.Backend, apply store.ApplyFunc, maxFails int, timeout time.Duration) *Processor {
	t.Helper()
	applier := b.Store.NewApplier(apply, store.ApplierOptions{Timeout: timeout})
	t.Cleanup(applier.Close)
	return NewProcessor(ProcessorOptions{Logger: testkit.Discard(), Applier: applier, Metrics: NewMetrics(prometheus.NewRegistry()),
		Timeout: timeout, Retries: RetryPolicy{MaxAttempts: maxFails, BaseDelay: time.Minute}, Jobs: b.Enqueuer})
}

// jobFor is the gocraft/work job of a stored event, as run for the
// (fails+1)th time.
func jobFor(t *testing.T, b *testkit.Backend, payload []byte, fails int64) *work.Job {
	t.Helper()
	var e struct{ ID, Type string }
	if err := json.Unmarshal(payload, &e); err != nil {
		t.Fatal(err)
	}
	row, err := b.Store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: e.ID, EventType: e.Type, Payload: payload, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	j := queue.Job{WebhookID: row.WebhookID, EventID: e.ID, EventType: e.Type}
	return &work.Job{Name: queue.JobName, ID: "job-" + e.ID, Args: j.Args(), Fails: fails}
}

// With WEBHOOK_MAX_RETRIES=3, the second failed attempt is not the last:
// the row is not dead and its next attempt is set; the third is the last.
func TestSecondFailureIsNotFinalWithThreeRetries(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	failing := func(context.Context, *store.Tx, store.WebhookEvent) error { return errors.New("handler broke") }
	p := processorFor(t, b, failing, 3, 5*time.Second)
	job := jobFor(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_three_tries"}), 0)
	for attempt := range 3 {
		job.Fails = int64(attempt) // gocraft/work counts each failed run
		if err := p.Process(job); err == nil {
			t.Fatalf("attempt %d: no error from a failing handler", attempt+1)
		}
		row, err := b.Store.EventByStripeID(context.Background(), "evt_three_tries")
		if err != nil {
			t.Fatal(err)
		}
		last := attempt == 2
		if row.RetryCount != attempt+1 || (row.DeadAt != nil) != last || (row.NextAttemptAt != nil) == last {
			t.Fatalf("after attempt %d of 3: retry_count %d, dead_at %v, next_attempt_at %v; want %d, dead %v, next attempt %v",
				attempt+1, row.RetryCount, row.DeadAt, row.NextAttemptAt, attempt+1, last, !last)
		}
	}
}

// An apply that blocks (past its own deadline) holds the applier; the job
// behind it comes back within about WEBHOOK_JOB_TIMEOUT, not stuck behind it.
func TestBlockedApplyReturnsWithinTheJobTimeout(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	const timeout = 400 * time.Millisecond
	started, release := make(chan struct{}), make(chan struct{})
	blocking := func(_ context.Context, _ *store.Tx, e store.WebhookEvent) error {
		if e.StripeEventID == "evt_blocks" {
			close(started)
			<-release // deaf to its deadline
		}
		return nil
	}
	p := processorFor(t, b, blocking, 5, timeout)
	p.Jobs = nil // a job not attempted fails as a plain error: easier to see
	blocked := jobFor(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_blocks"}), 0)
	behind := jobFor(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_behind"}), 0)
	first := make(chan error, 1)
	go func() { first <- p.Process(blocked) }()
	<-started
	began := time.Now()
	err := p.Process(behind)
	took := time.Since(began)
	close(release)
	<-first
	if !errors.Is(err, store.ErrNotAttempted) {
		t.Errorf("the job behind a blocked apply returned %v, want a not-attempted error", err)
	}
	if took > 3*timeout {
		t.Errorf("the job behind a blocked apply returned after %s, want about WEBHOOK_JOB_TIMEOUT (%s)", took, timeout)
	}
}

// A job put back maxDeferrals times without an attempt is not put back
// again: its next run that cannot take its event counts as a failure.
func TestDeferralsAreCapped(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	p := processorFor(t, b, func(context.Context, *store.Tx, store.WebhookEvent) error { return nil }, 5, 300*time.Millisecond)
	down, err := store.Open(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/nothing?sslmode=disable&connect_timeout=1", testenv.FreePort(t)), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = down.Close() })
	unreachable := down.NewApplier(func(context.Context, *store.Tx, store.WebhookEvent) error { return nil }, store.ApplierOptions{Timeout: 300 * time.Millisecond})
	t.Cleanup(unreachable.Close)
	p.Applier = unreachable
	conn := testkit.DialRedis(t, b.RedisAddr)
	retries := func() int {
		n, err := redis.Int(conn.Do("ZCARD", queue.RetryKey(b.Namespace)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	job := &work.Job{Name: queue.JobName, ID: "job-capped", Args: queue.Job{WebhookID: "6f1c2e1a-0000-4000-8000-000000000001",
		EventID: "evt_capped", EventType: "account.updated"}.Args()}
	if err := p.Process(job); err != nil || retries() != 1 {
		t.Fatalf("first run with the database away: %v, %d in the retry set; want nil, 1", err, retries())
	}
	job.Args["deferred"] = float64(maxDeferrals)
	if err := p.Process(job); !errors.Is(err, store.ErrNotAttempted) {
		t.Errorf("a run past %d deferrals returned %v, want a counted, not-attempted failure", maxDeferrals, err)
	}
	if n := retries(); n != 1 {
		t.Errorf("the retry set holds %d jobs, want 1 (the capped run is not put back)", n)
	}
}
