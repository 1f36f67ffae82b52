package queue_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/testenv"
)

// sharedRedis is a pool of size connections to the shared Redis, closed
// with the test, and a gocraft/work namespace of the test's own.
func sharedRedis(t *testing.T, size int) (string, *redis.Pool) {
	t.Helper()
	ns := testenv.Namespace(t, "")
	host, port := testenv.RedisHostPort(t, testenv.RedisAddr())
	pool := queue.NewPool(config.Redis{Host: host, Port: port, Namespace: ns}, size)
	t.Cleanup(func() { _ = pool.Close() })
	return ns, pool
}

func TestEnqueueMergesWaitingCopies(t *testing.T) {
	t.Parallel()
	ns, pool := sharedRedis(t, 4)
	q := queue.NewEnqueuer(ns, pool)
	job := queue.Job{WebhookID: "6f1c2e1a-0000-4000-8000-000000000001", EventID: "evt_1", EventType: "account.updated"}
	for i := range 3 {
		added, err := q.Enqueue(context.Background(), job)
		if err != nil {
			t.Fatal(err)
		}
		if added != (i == 0) {
			t.Errorf("copy %d: added = %v", i+1, added)
		}
	}
	if _, err := q.Enqueue(context.Background(), queue.Job{WebhookID: "6f1c2e1a-0000-4000-8000-000000000002", EventID: "evt_2", EventType: "account.updated"}); err != nil {
		t.Fatal(err)
	}
	conn := pool.Get()
	defer conn.Close()
	n, err := redis.Int(conn.Do("LLEN", queue.ListKey(ns)))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%s holds %d jobs, want 2 (three copies of evt_1 merged)", queue.ListKey(ns), n)
	}
}

func TestEnqueueWithRedisDownFails(t *testing.T) {
	t.Parallel()
	pool := queue.NewPool(config.Redis{Host: "127.0.0.1", Port: testenv.FreePort(t), Namespace: "x"}, 2)
	t.Cleanup(func() { _ = pool.Close() })
	if _, err := queue.NewEnqueuer("x", pool).Enqueue(context.Background(), queue.Job{WebhookID: "w", EventID: "evt"}); err == nil {
		t.Fatal("enqueue with nothing listening succeeded")
	}
}

func TestTrimDeadKeepsTheNewest(t *testing.T) {
	t.Parallel()
	ns, pool := sharedRedis(t, 2)
	conn := pool.Get()
	defer conn.Close()
	for i := range 1005 {
		if _, err := conn.Do("ZADD", queue.DeadKey(ns), i, i); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := queue.TrimDead(context.Background(), pool, ns, 1000)
	if err != nil || removed != 5 {
		t.Fatalf("removed %d, %v; want 5", removed, err)
	}
	oldest, err := redis.Strings(conn.Do("ZRANGE", queue.DeadKey(ns), 0, 0))
	if err != nil || len(oldest) != 1 || oldest[0] != "5" {
		t.Errorf("oldest kept = %v, want 5", oldest)
	}
}

// EnqueueMany and gocraft/work's own EnqueueUnique write the same keys: they
// merge each other's waiting copies, and a worker taking the job drops the
// unique key.
func TestEnqueueManyIsGocraftCompatible(t *testing.T) {
	t.Parallel()
	ns, pool := sharedRedis(t, 8)
	q := queue.NewEnqueuer(ns, pool)
	jobs := []queue.Job{
		{WebhookID: "6f1c2e1a-0000-4000-8000-000000000001", EventID: "evt_1", EventType: "account.updated"},
		{WebhookID: "6f1c2e1a-0000-4000-8000-000000000002", EventID: "evt_2", EventType: "capability.updated"},
		{WebhookID: "6f1c2e1a-0000-4000-8000-000000000001", EventID: "evt_1", EventType: "account.updated"},
	}
	added, err := q.EnqueueMany(context.Background(), jobs)
	if err != nil || fmt.Sprint(added) != "[true true false]" {
		t.Fatalf("added %v, %v; want [true true false]", added, err)
	}
	// gocraft/work's own enqueue sees the copy EnqueueMany left waiting.
	if j, err := work.NewEnqueuer(ns, pool).EnqueueUnique(queue.JobName, jobs[1].Args()); err != nil || j != nil {
		t.Fatalf("gocraft EnqueueUnique of a waiting job: %v, %v; want merged", j, err)
	}
	// A real pool takes both jobs, decodes their arguments, and drops the unique keys.
	got := make(chan queue.Job, 2)
	wp := work.NewWorkerPool(struct{}{}, 2, ns, pool)
	wp.Job(queue.JobName, func(j *work.Job) error {
		job, err := queue.JobFrom(j)
		if err != nil {
			t.Error(err)
		}
		got <- job
		return nil
	})
	wp.Start()
	defer wp.Stop()
	seen := map[string]bool{}
	for range 2 {
		select {
		case j := <-got:
			seen[j.EventID] = true
		case <-time.After(15 * time.Second):
			t.Fatal("the pool did not run the jobs")
		}
	}
	if !seen["evt_1"] || !seen["evt_2"] {
		t.Errorf("ran %v", seen)
	}
	testenv.Eventually(t, 5*time.Second, "the unique keys to be dropped", func() bool {
		added, err := q.EnqueueMany(context.Background(), jobs[:1])
		if err != nil {
			t.Fatal(err)
		}
		return added[0]
	})
}

// A job's webhook_id must be a uuid: anything else names no event.
func TestJobFromRefusesMalformedWebhookIDs(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"", "not-a-uuid", "6f1c2e1a-0000-4000-8000-00000000000", "6f1c2e1a00004000800000000000000001",
		"6f1c2e1a-0000-4000-8000-00000000000g", "{6f1c2e1a-0000-4000-8000-000000000001}", "6f1c2e1a-0000-4000-8000-0000000000012"} {
		_, err := queue.JobFrom(&work.Job{ID: "j", Args: map[string]any{"webhook_id": id, "event_id": "evt_1", "event_type": "account.updated"}})
		var malformed *queue.MalformedError
		if !errors.As(err, &malformed) {
			t.Errorf("webhook_id %q: %v, want a MalformedError", id, err)
		}
	}
	_, err := queue.JobFrom(&work.Job{ID: "j", Args: map[string]any{"webhook_id": 42, "event_id": "evt_1", "event_type": "account.updated"}})
	if malformed := (*queue.MalformedError)(nil); !errors.As(err, &malformed) {
		t.Errorf("a numeric webhook_id: %v, want a MalformedError", err)
	}
	j, err := queue.JobFrom(&work.Job{ID: "j", Args: map[string]any{"webhook_id": "6F1C2E1A-0000-4000-8000-00000000000a", "event_id": "evt_1", "event_type": "account.updated"}})
	if err != nil || j.WebhookID != "6F1C2E1A-0000-4000-8000-00000000000a" {
		t.Errorf("a valid uuid: %+v, %v", j, err)
	}
}
