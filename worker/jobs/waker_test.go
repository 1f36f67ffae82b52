package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/testenv"
)

// wakeLog records when a Waker called its drain func.
type wakeLog struct {
	mu sync.Mutex
	at []time.Time
}

func (l *wakeLog) drain() {
	l.mu.Lock()
	l.at = append(l.at, time.Now())
	l.mu.Unlock()
}

// after returns the first wake-up after t.
func (l *wakeLog) after(t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.at {
		if at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

func (l *wakeLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.at)
}

// startWaker starts a Waker on cfg that logs into logs and records its
// wake-ups, and stops it when the test ends.
func startWaker(t *testing.T, cfg config.Redis, logs *testenv.Buffer) (*Waker, *wakeLog) {
	t.Helper()
	wakes := &wakeLog{}
	w := NewWaker(slog.New(slog.NewTextHandler(logs, nil)), cfg, wakes.drain)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w, wakes
}

// subscribers is how many clients of the Redis server at addr subscribe to
// channel.
func subscribers(addr, channel string) int {
	c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second),
		redis.DialReadTimeout(time.Second), redis.DialWriteTimeout(time.Second))
	if err != nil {
		return -1
	}
	defer c.Close()
	v, err := redis.Values(c.Do("PUBSUB", "NUMSUB", channel))
	if err != nil || len(v) != 2 {
		return -1
	}
	n, _ := redis.Int(v[1], nil)
	return n
}

// After a failover from a frozen master (SIGSTOP: the subscription's
// connection stays open and nothing fails on it), the wake-up subscription
// moves to the new master within a few seconds of the sentinels' switch,
// and enqueues through a pool wake the pool again.
func TestWakerFollowsFailoverFromFrozenMaster(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisSentinel(t)
	cfg := config.Redis{SentinelAddrs: rs.SentinelAddrs(), SentinelMaster: rs.MasterName, Namespace: testenv.RandomName("swtest-")}
	logs := &testenv.Buffer{}
	_, wakes := startWaker(t, cfg, logs)
	channel := queue.WakeChannel(cfg.Namespace)
	old := rs.Master()
	testenv.Eventually(t, 10*time.Second, "the waker to subscribe on "+old, func() bool { return subscribers(old, channel) == 1 })
	pool := queue.NewPool(cfg, 4)
	t.Cleanup(func() { _ = pool.Close() })
	q := queue.NewEnqueuer(cfg.Namespace, pool)
	i := 0
	enqueue := func(wait time.Duration) error {
		i++
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, err := q.Enqueue(ctx, queue.Job{WebhookID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			EventID: fmt.Sprintf("evt_wake_%d", i), EventType: "account.updated"})
		return err
	}
	if err := enqueue(time.Second); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "a wake-up before the freeze", func() bool { return wakes.count() > 0 })

	rs.PauseMaster()
	var switched time.Time
	testenv.Eventually(t, 30*time.Second, "the sentinels to name a new master", func() bool {
		if rs.Master() == old {
			return false
		}
		switched = time.Now()
		return true
	})
	// Enqueue until a wake-up follows an enqueue that succeeded.
	var first time.Time
	var lastOK time.Time
	testenv.Eventually(t, 10*time.Second, "an enqueue on the new master to wake the pool", func() bool {
		if !lastOK.IsZero() {
			if at, ok := wakes.after(lastOK); ok {
				first = at
				return true
			}
		}
		began := time.Now()
		if enqueue(250*time.Millisecond) == nil {
			lastOK = began
		}
		return false
	})
	t.Logf("first wake-up %s after the switch of master", first.Sub(switched).Round(time.Millisecond))
	if d := first.Sub(switched); d > 5*time.Second {
		t.Errorf("first wake-up %s after the switch, want within a few seconds", d.Round(time.Millisecond))
	}
	if n := subscribers(rs.Master(), channel); n != 1 {
		t.Errorf("%d subscribers on the new master, want 1", n)
	}
	// Each enqueue now wakes the pool.
	for range 5 {
		began := time.Now()
		if err := enqueue(time.Second); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 2*time.Second, "a wake-up after the enqueue", func() bool {
			_, ok := wakes.after(began)
			return ok
		})
	}
	if t.Failed() {
		t.Log(logs.String())
	}
}

// Waker.Stop returns within a bounded time when the master hangs while the
// waker subscribes (its dial, the ROLE it asks and the SUBSCRIBE run under
// a context Stop cancels), and not when Redis resumes.
func TestWakerStopIsBoundedWhileMasterHangs(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisSentinel(t)
	cfg := config.Redis{SentinelAddrs: rs.SentinelAddrs(), SentinelMaster: rs.MasterName, Namespace: testenv.RandomName("swtest-")}
	frozen := rs.PauseMaster()
	logs := &testenv.Buffer{}
	w, wakes := startWaker(t, cfg, logs)
	testenv.Consistently(t, 500*time.Millisecond, "the waker not to subscribe to the frozen master", func() bool {
		return wakes.count() == 0
	})
	stopped := make(chan struct{})
	began := time.Now()
	go func() {
		w.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		took := time.Since(began)
		t.Logf("Stop returned after %s", took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Errorf("Stop took %s with the master hung, want 2 s at most", took.Round(time.Millisecond))
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Stop still blocked after 5 s with the master hung")
		rs.ResumeNode(frozen)
		<-stopped
	}
}
