package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gocraft/work"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// processedWithin polls until the event is processed and returns how long
// that took from since.
func processedWithin(t *testing.T, b *testkit.Backend, eventID string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	return processedAt(t, b, eventID, limit).Sub(since)
}

// processedAt polls until the event is processed, for at most limit, and
// returns when it was seen processed.
func processedAt(t *testing.T, b *testkit.Backend, eventID string, limit time.Duration) time.Time {
	t.Helper()
	testenv.Eventually(t, limit, "event "+eventID+" to be processed", processedEvent(t, b, eventID))
	return time.Now()
}

// idle keeps the pool without jobs for d: gocraft/work's workers then sleep
// 5 s between fetches.
func idle(t *testing.T, b *testkit.Backend, d time.Duration) {
	t.Helper()
	conn := b.Pool(t).Get()
	defer conn.Close()
	testenv.Consistently(t, d, "the queue to stay empty", func() bool {
		n, err := conn.Do("LLEN", queue.ListKey(b.Namespace))
		return err == nil && n.(int64) == 0
	})
}

// An event delivered to a pool idle for over 10 s is processed within 1 s (the
// wake-up published with its enqueue ends the workers' sleep); one queued
// without the wake-up (gocraft/work's own enqueue, as for a lost message) is
// still processed by the workers' poll, within 10 s.
func TestIdlePoolTakesADeliveryAtOnce(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	in := startIngestWith(t, b, nil)
	// One worker goroutine: without the wake-up, a job would wait for its
	// next poll, up to 5 s away.
	startWorker(t, b, map[string]string{"WEBHOOK_WORKER_CONCURRENCY": "1"})

	// gocraft/work's worker polls 0, 10, 100, 1,000 ms after its last job,
	// then every 5 s: quiet periods of 12.5 s and 7.5 s after a job end
	// 3.6 s before its next poll.
	deliver := func(account string) time.Time {
		p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: account})
		if code := post(t, in.Base+"/api/billing/webhooks/stripe", p); code != http.StatusOK {
			t.Fatalf("delivery: %d", code)
		}
		return processedAt(t, b, testkit.EventID(p), 10*time.Second)
	}
	deliver("acct_wake_first")
	for i, quiet := range []time.Duration{12500 * time.Millisecond, 7500 * time.Millisecond} {
		idle(t, b, quiet)
		answered := time.Now()
		took := deliver(fmt.Sprintf("acct_wake_%d", i)).Sub(answered)
		t.Logf("after %s idle: processed %s after its 200", quiet, took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("after %s idle: processed %s after its 200, want within 1 s", quiet, took.Round(time.Millisecond))
		}
	}

	idle(t, b, 6500*time.Millisecond)
	p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_wake_lost"})
	row, err := b.Store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: testkit.EventID(p), EventType: "account.updated",
		Payload: p, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	job := queue.Job{WebhookID: row.WebhookID, EventID: testkit.EventID(p), EventType: "account.updated"}
	if _, err := work.NewEnqueuer(b.Namespace, b.Pool(t)).EnqueueUnique(queue.JobName, job.Args()); err != nil {
		t.Fatal(err)
	}
	took := processedWithin(t, b, testkit.EventID(p), time.Now(), 10*time.Second)
	t.Logf("without a wake-up: processed %s after its enqueue (the workers' poll)", took.Round(time.Millisecond))
}

// A failed job's retry runs soon after it is due, not at the workers' next
// poll: the process that failed it wakes the pool once gocraft/work's
// requeuer has moved it back to the queue.
func TestRetryRunsSoonAfterItIsDue(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	in := startIngestWith(t, b, nil)
	startWorker(t, b, map[string]string{"WEBHOOK_JOB_TIMEOUT": "1s", "WEBHOOK_RETRY_BASE_DELAY": "2s"})
	const acct = "acct_wake_retry"
	first := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct})
	if code := post(t, in.Base+"/api/billing/webhooks/stripe", first); code != http.StatusOK {
		t.Fatalf("delivery: %d", code)
	}
	testenv.Eventually(t, 5*time.Second, "the account row", processedEvent(t, b, testkit.EventID(first)))

	// Hold the account's row, so that the next event's handler outlasts
	// its 1 s deadline: one failed attempt, recorded, retried after 2 s.
	tx := b.Store.DB().Begin()
	if err := tx.Exec("SELECT 1 FROM stripe_connected_accounts WHERE stripe_account_id = ? FOR UPDATE", acct).Error; err != nil {
		t.Fatal(err)
	}
	p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct})
	if code := post(t, in.Base+"/api/billing/webhooks/stripe", p); code != http.StatusOK {
		t.Fatalf("delivery: %d", code)
	}
	var failedAt time.Time
	testenv.Eventually(t, 10*time.Second, "the first attempt to fail", func() bool {
		row, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(p))
		if err == nil && row.RetryCount == 1 {
			failedAt = time.Now()
			return true
		}
		return false
	})
	tx.Rollback()
	due := failedAt.Add(2 * time.Second)
	testenv.Eventually(t, 15*time.Second, "the retry to apply the event", processedEvent(t, b, testkit.EventID(p)))
	late := time.Since(due)
	t.Logf("retry processed %s after its due time", late.Round(time.Millisecond))
	// The requeuer looks every second and the process wakes the pool 1.1 s
	// after the due time; the workers' own poll could add up to 5 s.
	if late > 2*time.Second {
		t.Errorf("retry processed %s after its due time, want within the requeuer's second plus the wake-up", late.Round(time.Millisecond))
	}
}
