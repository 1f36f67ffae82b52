package jobs

import (
	"math"
	"time"

	"github.com/gocraft/work"

	"stripe-webhooks/pkg/store"
)

// RetryPolicy is what becomes of a failed attempt: gocraft/work retries the
// job after a backoff that doubles, and moves it to the dead set after
// MaxAttempts; the event's row records the same (store.Attempt).
type RetryPolicy struct {
	// MaxAttempts is the attempts in all (WEBHOOK_MAX_RETRIES).
	MaxAttempts int
	// BaseDelay is the wait after the first failure (WEBHOOK_RETRY_BASE_DELAY).
	BaseDelay time.Duration
}

// JobOptions are the gocraft/work options of process-webhook under p.
func (p RetryPolicy) JobOptions() work.JobOptions {
	return work.JobOptions{MaxFails: uint(p.MaxAttempts), Backoff: p.Backoff()}
}

// Backoff waits BaseDelay × 2^(fails-1) before the next attempt: 1, 2, 4, 8
// minutes with the default 60 s base. gocraft/work counts in seconds.
func (p RetryPolicy) Backoff() work.BackoffCalculator {
	base := p.BaseDelay
	return func(job *work.Job) int64 {
		fails := max(job.Fails, 1)
		secs := base.Seconds() * math.Pow(2, float64(min(fails-1, 30)))
		return int64(max(1, math.Ceil(min(secs, 7*24*3600))))
	}
}

// retryAt is when gocraft/work runs job again if this run fails, counted
// from now (when it files the job in the retry set).
func (p RetryPolicy) retryAt(job *work.Job) time.Time {
	next := *job
	next.Fails++
	return time.Now().Add(time.Duration(p.Backoff()(&next)) * time.Second)
}

// attempt says what gocraft/work does if this run of job fails: it counts
// one more fail, then retries after the backoff or, at MaxAttempts, kills
// it.
func (p RetryPolicy) attempt(job *work.Job) store.Attempt {
	if job.Fails+1 >= int64(p.MaxAttempts) {
		return store.Attempt{Final: true}
	}
	return store.Attempt{RetryAt: p.retryAt(job)}
}

// maxDeferral is the longest a job whose event could not be taken waits
// before it tries again: a database outage costs a job no attempt, and it
// runs within this long of the database's return.
const maxDeferral = 30 * time.Second

// maxDeferrals bounds how often one job is put back without an attempt:
// at maxDeferral apart, about three days (Stripe's own redelivery window).
// Past it, a run that cannot take its event counts as a failed attempt, so
// a job that can never be taken ends in the dead set rather than circling.
const maxDeferrals = 72 * 60 * 2

// deferral is the wait before a job put back n times (0, 1, …) runs again:
// 1, 2, 4, … seconds, at most maxDeferral.
func deferral(n int) time.Duration {
	return min(time.Duration(1<<min(n, 10))*time.Second, maxDeferral)
}

// requeueLag is how long after a retry's due time gocraft/work's requeuer,
// which looks every second, has surely moved it back to the queue.
const requeueLag = 1100 * time.Millisecond
