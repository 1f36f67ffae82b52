package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
	"github.com/google/go-cmp/cmp"

	"stripe-webhooks/pkg/queue"
)

// Pending finds jobs waiting, in progress in a live pool or waiting for a
// retry (3,000 of them, over several ZSCAN pages), and reports not pending an
// event without a job, with a job waiting without its unique key, or whose
// job a killed pool was running.
func TestPendingFindsWaitingRunningAndRetryingJobs(t *testing.T) {
	t.Parallel()
	ns, pool := sharedRedis(t, 2)
	q := queue.NewEnqueuer(ns, pool)
	ctx := context.Background()
	conn := pool.Get()
	defer conn.Close()
	do := func(cmd string, args ...any) {
		t.Helper()
		if _, err := conn.Do(cmd, args...); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	job := func(i int) queue.Job {
		return queue.Job{WebhookID: fmt.Sprintf("6f1c2e1a-0000-4000-8000-%012d", i), EventID: fmt.Sprintf("evt_%d", i), EventType: "account.updated"}
	}
	raw := func(j queue.Job) []byte {
		b, err := json.Marshal(work.Job{Name: queue.JobName, ID: "job" + j.EventID, EnqueuedAt: time.Now().Unix(), Args: j.Args(), Unique: true})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	waiting, running, killed, requeued, none := job(1), job(2), job(3), job(4), job(5)
	if _, err := q.EnqueueMany(ctx, []queue.Job{waiting}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	for pool, beat := range map[string]int64{"live": now, "killed": now - 3600} {
		do("SADD", ns+":worker_pools", pool)
		do("HSET", ns+":worker_pools:"+pool, "heartbeat_at", beat)
	}
	do("LPUSH", queue.ListKey(ns)+":live:inprogress", raw(running))
	do("LPUSH", queue.ListKey(ns)+":killed:inprogress", raw(killed))
	// Requeued from the retry set: waiting, but without a unique key.
	do("LPUSH", queue.ListKey(ns), raw(requeued))
	jobs := []queue.Job{waiting, running, killed, requeued, none, running}
	want := []bool{true, true, false, false, false, true}
	for i := range 3000 {
		retrying := job(1000 + i)
		do("ZADD", queue.RetryKey(ns), now+int64(i), raw(retrying))
		jobs, want = append(jobs, retrying), append(want, true)
	}

	got, err := q.Pending(ctx, jobs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[:6], got[:6]); diff != "" {
		t.Errorf("Pending(waiting, running, killed, requeued, none, running) (-want +got):\n%s", diff)
	}
	for i := 6; i < len(jobs); i++ {
		if !got[i] {
			t.Errorf("retrying job %s not pending", jobs[i].EventID)
		}
	}

	if got, err := q.Pending(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Pending(nil) = %v, %v", got, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := q.Pending(cancelled, jobs); err == nil {
		t.Error("Pending with a cancelled context succeeded")
	}
	if n, err := redis.Int(conn.Do("LLEN", queue.ListKey(ns))); err != nil || n != 2 {
		t.Errorf("%d jobs waiting after Pending, %v; want the 2 there before", n, err)
	}
}
