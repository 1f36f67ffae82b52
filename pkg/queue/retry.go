package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
)

// deferredArg counts the times a job was put back without an attempt.
const deferredArg = "deferred"

// Deferrals is how many times job was put back by Defer.
func Deferrals(job *work.Job) int {
	n, _ := job.Args[deferredArg].(float64) // JSON numbers decode as float64
	return int(n)
}

// Defer files job in the retry set to run again at at, without counting
// a fail: gocraft/work's requeuer moves it back to the queue when it is
// due, as it does a retry, and the web UI lists it among the retries with
// reason as its error. The worker's handler then returns no error, so the
// job's own fail count and its way to the dead set are untouched.
func (q *Enqueuer) Defer(ctx context.Context, job *work.Job, at time.Time, reason string) error {
	next := *job
	next.Args = maps.Clone(job.Args)
	next.Args[deferredArg] = Deferrals(job) + 1
	next.LastErr = reason
	next.FailedAt = time.Now().Unix()
	if err := q.fileJob(ctx, "redis defer", RetryKey(q.namespace), at.Unix(), &next); err != nil {
		return fmt.Errorf("queue: defer: %w", err)
	}
	return nil
}

// Kill files job in the dead set at once, as gocraft/work does after its
// last failed attempt (one more fail counted, reason as its error), for a
// job that no attempt can help: the web UI lists it among the dead jobs,
// where ops can read, retry or delete it. The worker's handler then
// returns no error, so gocraft/work does not retry it.
func (q *Enqueuer) Kill(ctx context.Context, job *work.Job, reason string) error {
	dead := *job
	dead.Fails++
	dead.LastErr = reason
	dead.FailedAt = time.Now().Unix()
	if err := q.fileJob(ctx, "redis kill", DeadKey(q.namespace), dead.FailedAt, &dead); err != nil {
		return fmt.Errorf("queue: kill: %w", err)
	}
	return nil
}

// fileJob adds job to the sorted set key with score, as gocraft/work files
// retried and dead jobs, in a span named span.
func (q *Enqueuer) fileJob(ctx context.Context, span, key string, score int64, job *work.Job) (err error) {
	ctx, s := startRedis(ctx, span, "ZADD", 1)
	defer func() { endRedis(s, err) }()
	raw, err := json.Marshal(job)
	if err != nil {
		return err
	}
	conn, err := q.pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = redis.DoContext(conn, ctx, "ZADD", key, score, raw)
	return err
}
