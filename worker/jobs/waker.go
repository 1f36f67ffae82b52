package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
)

// Waker ends the worker pool's idle sleep when a job is queued. A
// gocraft/work worker that finds the queue empty sleeps 10 ms, 100 ms, 1 s,
// then 5 s between fetches; an idle pool would take a new job seconds after
// it was queued. Every EnqueueMany publishes on queue.WakeChannel in its own
// round trip; the Waker holds a subscription to it on a connection of its
// own and, on each message, calls WorkerPool.Drain, which makes every
// worker fetch at once. A quiet subscription sends Redis nothing, so an
// idle pool polls no more than gocraft/work does by itself.
//
// Drain returns only once each worker has found the queue empty, and two
// overlapping calls can leave one waiting for good: one goroutine calls it,
// and messages that arrive meanwhile are folded into one more call after
// it. A worker busy with a long job holds a Drain until that job ends; the
// other workers of the process then take new jobs at their next poll.
//
// With Sentinel the Waker asks the sentinels every second where the master
// is (the master itself is sent nothing more) and, once they name another
// server, leaves the old one and subscribes on the new: a master that hangs
// rather than dies never fails the subscription by itself.
//
// A message is lost when the subscription is down (Redis restarting, a
// network cut, a failover) or the process was not subscribed yet: the job
// then waits for gocraft/work's own poll, at most 5 s, as without the Waker.
type Waker struct {
	logger  *slog.Logger
	channel string
	sub     *queue.Subscriber // dials the subscription; with Sentinel, follows the master
	drain   func()
	signal  chan struct{}

	mu       sync.Mutex
	conn     redis.Conn // the subscription's connection, to close on Stop
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// NewWaker returns a Waker that calls drain (the pool's Drain) when jobs of
// cfg's namespace are queued.
func NewWaker(logger *slog.Logger, cfg config.Redis, drain func()) *Waker {
	return &Waker{logger: logger.With("task", "waker"), channel: queue.WakeChannel(cfg.Namespace),
		sub: queue.NewSubscriber(cfg), drain: drain, signal: make(chan struct{}, 1)}
}

// Start subscribes and wakes the pool until Stop or ctx ends.
func (w *Waker) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	w.cancel, w.done = cancel, make(chan struct{})
	w.mu.Unlock()
	go w.drainer(ctx)
	go func() {
		defer close(w.done)
		defer w.sub.Close()
		w.subscribe(ctx)
	}()
	return nil
}

// Stop ends the subscription and waits for it, a moment at most even if
// Redis or the sentinels hang: the dial, its ROLE and the wait for Sentinel
// run under a context Stop cancels, and Stop closes the subscription's
// connection. A Drain in progress is not waited for: it ends when the
// workers next find the queue empty, or never if the pool stops first,
// which is harmless at shutdown. Stop before the pool's Stop, so that no
// Drain starts on a stopped pool.
func (w *Waker) Stop() {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		cancel, done, conn := w.cancel, w.done, w.conn
		w.mu.Unlock()
		if cancel == nil {
			return
		}
		cancel()
		if conn != nil {
			_ = conn.Close() // ends a Receive waiting for a message
		}
		<-done
	})
}

// Wake makes the pool fetch at once (or right after a Drain in progress).
func (w *Waker) Wake() {
	select {
	case w.signal <- struct{}{}:
	default: // one is pending already
	}
}

// WakeAt wakes the pool at t: when a failed job's retry is due, and
// gocraft/work's requeuer (which looks every second) has moved it back to
// the queue.
func (w *Waker) WakeAt(t time.Time) {
	time.AfterFunc(time.Until(t), w.Wake)
}

func (w *Waker) drainer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.signal:
			if ctx.Err() != nil {
				return
			}
			w.drain()
		}
	}
}

// subscribe keeps a subscription to the wake channel, reconnecting after a
// failure with a backoff of up to 5 s.
func (w *Waker) subscribe(ctx context.Context) {
	backoff := 100 * time.Millisecond
	down := false
	for ctx.Err() == nil {
		err := w.listen(ctx, func() {
			backoff = 100 * time.Millisecond
			if down {
				w.logger.Info("wake-up subscription restored")
				down = false
			}
		})
		if ctx.Err() != nil {
			return
		}
		if !down {
			w.logger.Warn("wake-up subscription lost; idle workers poll every 5 s until it is back", "error", err)
			down = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// masterWatch is how often, with Sentinel, the Waker asks the sentinels
// where the master is.
const masterWatch = time.Second

// listen subscribes once and wakes the pool on each message until the
// connection fails or, with Sentinel, the master moves. subscribed is
// called once the subscription holds.
func (w *Waker) listen(ctx context.Context, subscribed func()) error {
	dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, addr, err := w.sub.Dial(dialCtx)
	cancel()
	if err != nil {
		return err
	}
	w.mu.Lock()
	if ctx.Err() != nil {
		w.mu.Unlock()
		_ = c.Close()
		return ctx.Err()
	}
	w.conn = c
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.conn = nil
		w.mu.Unlock()
		_ = c.Close()
	}()
	moved, stopWatch := w.watchMaster(ctx, c, addr)
	defer stopWatch()
	psc := redis.PubSubConn{Conn: c}
	if err := psc.Subscribe(w.channel); err != nil {
		return err
	}
	for {
		switch v := psc.ReceiveWithTimeout(0).(type) {
		case redis.Message:
			w.Wake()
		case redis.Subscription:
			if v.Kind == "subscribe" {
				subscribed()
				// Jobs queued while the subscription was down were announced
				// to no one.
				w.Wake()
			}
		case error:
			if to := moved.Load(); to != nil {
				return fmt.Errorf("the master moved from %s to %s", addr, *to)
			}
			return v
		}
		if ctx.Err() != nil {
			return errors.New("waker stopped")
		}
	}
}

// watchMaster has watch follow, with Sentinel, the master of c's
// subscription on addr. It returns where the master moved (nil until it
// does) and a func that ends the watch and waits for it.
func (w *Waker) watchMaster(ctx context.Context, c redis.Conn, addr string) (*atomic.Pointer[string], func()) {
	moved := &atomic.Pointer[string]{}
	if !w.sub.UsesSentinel() {
		return moved, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.watch(ctx, c, addr, moved)
	}()
	return moved, func() { cancel(); <-done }
}

// watch asks Sentinel every masterWatch where the master is and, once it
// names another server than addr, records it in moved and closes c, which
// ends the subscription on it.
func (w *Waker) watch(ctx context.Context, c redis.Conn, addr string, moved *atomic.Pointer[string]) {
	tick := time.NewTicker(masterWatch)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, err := w.sub.Master(ctx)
		if err != nil || now == addr {
			continue // a sentinel question that failed says nothing of the master
		}
		moved.Store(&now)
		_ = c.Close()
		return
	}
}
