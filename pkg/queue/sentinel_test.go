package queue_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/testenv"
)

// A pool configured with Sentinel follows the master: jobs queued before a
// failover are on the new master (WAIT), and jobs queued after it go to
// the new master, through the same pool and without a restart; a borrowed
// connection to the old master, back as a replica, is never used for a
// write.
func TestPoolFollowsSentinelFailover(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisSentinel(t)
	cfg := config.Redis{SentinelAddrs: rs.SentinelAddrs(), SentinelMaster: rs.MasterName, Namespace: "sw-sentinel",
		Host: "192.0.2.1", Port: 1} // ignored with Sentinel
	pool := queue.NewPool(cfg, 8)
	t.Cleanup(func() { _ = pool.Close() })
	q := queue.NewEnqueuer(cfg.Namespace, pool)
	ctx := context.Background()
	job := func(i int) queue.Job {
		return queue.Job{WebhookID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), EventID: fmt.Sprintf("evt_%d", i), EventType: "account.updated"}
	}
	for i := range 10 {
		if _, err := q.Enqueue(ctx, job(i)); err != nil {
			t.Fatal(err)
		}
	}
	old := rs.Master()
	func() { // the replica has them before the kill
		c := pool.Get()
		defer c.Close()
		if n, err := redis.Int(c.Do("WAIT", 1, 5000)); err != nil || n != 1 {
			t.Fatalf("WAIT = %d, %v", n, err)
		}
	}()
	killed := time.Now()
	rs.KillMaster()
	// Enqueue as a client would, until it works again.
	var recovered time.Duration
	testenv.Eventually(t, 30*time.Second, "an enqueue to succeed after the failover", func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := q.Enqueue(cctx, job(100)); err != nil {
			return false
		}
		recovered = time.Since(killed)
		return true
	})
	next := rs.WaitForFailover(30 * time.Second)
	if next == old {
		t.Fatalf("master still %s", old)
	}
	t.Logf("enqueue works again %s after the master was killed", recovered.Round(10*time.Millisecond))
	direct, err := redis.Dial("tcp", next)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if n, err := redis.Int(direct.Do("LLEN", queue.ListKey(cfg.Namespace))); err != nil || n != 11 {
		t.Errorf("new master %s holds %d jobs (%v), want 11", next, n, err)
	}

	// The old master comes back and is made a replica; every connection
	// the pool lends now writes to the new master.
	rs.StartNodeAgain(old)
	rs.WaitForReplica(old, 30*time.Second)
	for i := 200; i < 220; i++ {
		if _, err := q.Enqueue(ctx, job(i)); err != nil {
			t.Fatalf("enqueue after the old master came back: %v", err)
		}
	}
	if n, err := redis.Int(direct.Do("LLEN", queue.ListKey(cfg.Namespace))); err != nil || n != 31 {
		t.Errorf("new master %s holds %d jobs (%v), want 31", next, n, err)
	}
}

// A subscriber connection goes to the master Sentinel names, and Master
// names it too.
func TestDialSubscriberAsksSentinel(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisSentinel(t)
	cfg := config.Redis{SentinelAddrs: rs.SentinelAddrs(), SentinelMaster: rs.MasterName, Namespace: "sw-sentinel"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub := queue.NewSubscriber(cfg)
	defer sub.Close()
	c, addr, err := sub.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if want := rs.Master(); addr != want {
		t.Errorf("subscriber dialled %s, want the master %s", addr, want)
	}
	if m, err := sub.Master(ctx); err != nil || m != addr {
		t.Errorf("Master() = %s, %v; want %s", m, err, addr)
	}
	role, err := redis.Values(c.Do("ROLE"))
	if err != nil || len(role) == 0 {
		t.Fatalf("ROLE: %v", err)
	}
	if r, _ := redis.String(role[0], nil); r != "master" {
		t.Errorf("subscriber dialled a %s", r)
	}
	bad := queue.NewSubscriber(config.Redis{SentinelAddrs: rs.SentinelAddrs(), SentinelMaster: "no-such-master", Namespace: "x"})
	defer bad.Close()
	if _, _, err := bad.Dial(ctx); err == nil {
		t.Error("a master no sentinel monitors was dialled")
	}
}

// A master demoted while the pool holds connections to it (a manual
// SENTINEL FAILOVER: the old master lives on as a replica) loses them: a
// write it refuses (READONLY) closes its connection, and within about a
// second of the switch every enqueue goes to the new master.
func TestPoolLeavesDemotedMaster(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisSentinel(t)
	cfg := config.Redis{SentinelAddrs: rs.SentinelAddrs(), SentinelMaster: rs.MasterName, Namespace: "sw-demoted"}
	pool := queue.NewPool(cfg, 8)
	t.Cleanup(func() { _ = pool.Close() })
	q := queue.NewEnqueuer(cfg.Namespace, pool)
	old := rs.Master()
	s, err := redis.Dial("tcp", rs.SentinelAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	i, failed, late := 0, 0, 0
	enqueue := func() error {
		i++
		_, err := q.Enqueue(ctx, queue.Job{WebhookID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), EventID: fmt.Sprintf("evt_%d", i), EventType: "account.updated"})
		return err
	}
	for range 20 { // connections to the old master, idle in the pool
		if err := enqueue(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Do("SENTINEL", "FAILOVER", rs.MasterName); err != nil {
		t.Fatal(err)
	}
	switched := time.Now()
	var next string
	testenv.Eventually(t, 30*time.Second, "the sentinels to name a new master", func() bool {
		next = rs.Master()
		return next != old
	})
	// Keep enqueueing for 3 s after the switch; from 1.5 s on none may fail.
	for time.Since(switched) < 3*time.Second {
		if err := enqueue(); err != nil {
			failed++
			if time.Since(switched) > 1500*time.Millisecond {
				t.Errorf("enqueue %.1f s after the switch: %v", time.Since(switched).Seconds(), err)
			}
		} else if time.Since(switched) > 1500*time.Millisecond {
			late++
		}
	}
	t.Logf("%d enqueues, %d refused around the switch", i, failed)
	direct, err := redis.Dial("tcp", next)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	// What was queued once the switch had settled is on the new master
	// (a write taken by the old master in the instant between the
	// promotion and its demotion is lost, as Redis replication is
	// asynchronous; the sweeper queues its event again).
	if n, err := redis.Int(direct.Do("LLEN", queue.ListKey(cfg.Namespace))); err != nil || n < late || n > i-failed {
		t.Errorf("new master holds %d jobs (%v), want %d..%d", n, err, late, i-failed)
	}
}

// A write refused with READONLY (a master demoted under a live connection:
// here by a REPLICAOF sent to it directly, which unlike the sentinels' own
// demotion does not cut its clients) marks that connection broken and makes
// the pool ask Sentinel again before it lends another connection to that
// server: the next enqueue goes to the new master at once, not when the
// pool would next have asked Sentinel by itself.
func TestPoolLeavesMasterThatRefusesAWrite(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisSentinel(t)
	cfg := config.Redis{SentinelAddrs: rs.SentinelAddrs(), SentinelMaster: rs.MasterName, Namespace: "sw-readonly"}
	pool := queue.NewPool(cfg, 4)
	t.Cleanup(func() { _ = pool.Close() })
	held := pool.Get() // borrowed across the switch
	defer held.Close()
	if _, err := held.Do("PING"); err != nil {
		t.Fatal(err)
	}
	old := rs.Master()
	s, err := redis.Dial("tcp", rs.SentinelAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Do("SENTINEL", "FAILOVER", rs.MasterName); err != nil {
		t.Fatal(err)
	}
	var next string
	testenv.Eventually(t, 30*time.Second, "the sentinels to name a new master", func() bool {
		next = rs.Master()
		return next != old
	})
	host, port := testenv.RedisHostPort(t, next)
	demote, err := redis.Dial("tcp", old)
	if err != nil {
		t.Fatal(err)
	}
	defer demote.Close()
	if _, err := demote.Do("REPLICAOF", host, port); err != nil {
		t.Fatal(err)
	}
	if _, err := held.Do("LPUSH", "sw-readonly:probe", "x"); err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
		t.Fatalf("a write on the demoted master answered %v, want READONLY", err)
	}
	_ = held.Close()
	if n := pool.Stats().IdleCount; n != 0 {
		t.Errorf("the connection refused with READONLY went back to the pool (%d idle), want it closed", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	began := time.Now()
	if _, err := queue.NewEnqueuer(cfg.Namespace, pool).Enqueue(ctx, testJob(1)); err != nil {
		t.Fatalf("the enqueue after the READONLY: %v", err)
	}
	took := time.Since(began)
	t.Logf("the enqueue after the READONLY took %s", took.Round(time.Millisecond))
	if took > 500*time.Millisecond {
		t.Errorf("the enqueue after the READONLY took %s, want well within a second", took.Round(time.Millisecond))
	}
	direct, err := redis.Dial("tcp", next)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if n, err := redis.Int(direct.Do("LLEN", queue.ListKey(cfg.Namespace))); err != nil || n != 1 {
		t.Errorf("new master %s holds %d jobs (%v), want 1", next, n, err)
	}
}
