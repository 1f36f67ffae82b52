package queue_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/testenv"
)

// sentinelConfig is the Redis configuration of a pool on rs.
func sentinelConfig(rs *testenv.RedisSentinel, namespace string) config.Redis {
	return config.Redis{SentinelAddrs: rs.SentinelAddrs(), SentinelMaster: rs.MasterName, Namespace: namespace}
}

func testJob(i int) queue.Job {
	return queue.Job{WebhookID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), EventID: fmt.Sprintf("evt_%d", i), EventType: "account.updated"}
}

// fillIdle borrows n connections of pool at once, uses each, and returns
// them: the pool then holds n idle connections.
func fillIdle(t *testing.T, pool *redis.Pool, n int) {
	t.Helper()
	conns := make([]redis.Conn, n)
	for i := range conns {
		conns[i] = pool.Get()
		if _, err := conns[i].Do("PING"); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
	if idle := pool.Stats().IdleCount; idle != n {
		t.Fatalf("pool holds %d idle connections, want %d", idle, n)
	}
}

// A Sentinel-managed master that hangs (SIGSTOP: connections accepted and
// kept, nothing answered) costs an enqueue no more than its deadline,
// however many connections idle for over a second (whose ROLE the pool
// checks when lending them) the pool holds, and queue.Ping keeps its 2 s
// deadline the same way: the checks, and the ROLE of a new connection, are
// asked under the caller's context, not waited for up to the 10 s read
// timeout.
func TestFrozenSentinelMasterCostsEnqueueOnlyItsDeadline(t *testing.T) {
	t.Parallel()
	const deadline, pingDeadline, slack = 250 * time.Millisecond, 2 * time.Second, 250 * time.Millisecond
	rs := testenv.StartRedisSentinel(t)
	cfg := sentinelConfig(rs, "sw-frozen")
	enqueuePool, pingPool := queue.NewPool(cfg, 8), queue.NewPool(cfg, 8)
	t.Cleanup(func() { _ = enqueuePool.Close(); _ = pingPool.Close() })
	fillIdle(t, enqueuePool, 4)
	fillIdle(t, pingPool, 4)
	old := rs.Master()
	testenv.Consistently(t, 1200*time.Millisecond, "the master to stay "+old+" while the connections idle", func() bool {
		return rs.Master() == old
	})
	rs.PauseMaster()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // at the same time, while the master is still frozen
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), pingDeadline)
		defer cancel()
		began := time.Now()
		err := queue.Ping(ctx, pingPool)
		took := time.Since(began)
		t.Logf("Ping with a %s deadline: %v after %s", pingDeadline, err, took.Round(time.Millisecond))
		if took > pingDeadline+slack {
			t.Errorf("Ping took %s, want its %s deadline plus %s at most", took.Round(time.Millisecond), pingDeadline, slack)
		}
	}()
	q := queue.NewEnqueuer(cfg.Namespace, enqueuePool)
	for i := range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		began := time.Now()
		_, err := q.EnqueueMany(ctx, []queue.Job{testJob(i)})
		took := time.Since(began)
		cancel()
		t.Logf("enqueue %d with a %s deadline: %v after %s", i, deadline, err, took.Round(time.Millisecond))
		if took > deadline+slack {
			t.Errorf("enqueue %d took %s, want its %s deadline plus %s at most", i, took.Round(time.Millisecond), deadline, slack)
		}
	}
	wg.Wait()
}

// With every sentinel hung (SIGSTOP) and the master healthy, enqueues keep
// their pace: no borrower waits for a sentinel's answer, in line behind
// others or at all (the pool asks in the background, one question at a
// time, remembers a failed question as it does an answer, and keeps to the
// master it knows).
func TestHungSentinelsDoNotSlowEnqueues(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second // over a recheck of the master every second
	rs := testenv.StartRedisSentinel(t)
	cfg := sentinelConfig(rs, "sw-hung-sentinels")
	pool := queue.NewPool(cfg, 16)
	t.Cleanup(func() { _ = pool.Close() })
	q := queue.NewEnqueuer(cfg.Namespace, pool)
	var next atomic.Int64
	// rate enqueues from 8 goroutines for window and returns the enqueues
	// per second done within it, and how many failed.
	rate := func() (float64, int64) {
		var done, failed atomic.Int64
		var wg sync.WaitGroup
		began := time.Now()
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(began) < window {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := q.Enqueue(ctx, testJob(int(next.Add(1))))
					cancel()
					if time.Since(began) > window {
						return
					}
					if err != nil {
						failed.Add(1)
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(done.Load()) / window.Seconds(), failed.Load()
	}
	before, _ := rate()
	rs.PauseSentinels()
	during, failed := rate()
	t.Logf("enqueues per second: %.0f with the sentinels up, %.0f with them hung (ratio %.2f, %d failed)", before, during, during/before, failed)
	if during < before/2 {
		t.Errorf("with the sentinels hung, %.0f enqueues per second, under half the %.0f before", during, before)
	}
	if failed > 0 {
		t.Errorf("%d enqueues failed with the master healthy and the sentinels hung", failed)
	}
}
