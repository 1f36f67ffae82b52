// Package queue is the Redis side: the redigo pool and the gocraft/work job
// that points a worker at a stored event. Redis holds only pointers; the
// event itself is in Postgres.
//
// With tracing on (package telemetry), each of its round trips to Redis
// (EnqueueMany, Pending, Defer, Kill, TrimDead) is a client span of the
// operation that makes it, written here by hand (trace.go): redigo has no
// maintained OpenTelemetry instrumentation. A job carries the traceparent
// stored with its event (Job.Traceparent), so that the worker's span of it
// joins the delivery's trace.
package queue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
)

// JobName is the gocraft/work job that applies one stored event.
const JobName = "process-webhook"

// Job is the arguments of a process-webhook job: ids only, never the payload.
type Job struct {
	WebhookID string // webhook_events.id
	EventID   string // Stripe's evt_… id
	EventType string
	// Traceparent is the W3C traceparent stored with the event (the
	// delivery's span): the worker's span of the job joins that trace. ""
	// while tracing is off, and in jobs queued before it existed; the job
	// then has no traceparent argument at all.
	Traceparent string
}

// traceparentArg is the optional argument that carries Job.Traceparent.
// Every job of one event carries the same value (the one stored with the
// event), so that gocraft/work's unique key, made of all the arguments,
// still allows one waiting job per event.
const traceparentArg = "traceparent"

// Args are the job's gocraft/work arguments.
func (j Job) Args() work.Q {
	q := work.Q{"webhook_id": j.WebhookID, "event_id": j.EventID, "event_type": j.EventType}
	if j.Traceparent != "" {
		q[traceparentArg] = j.Traceparent
	}
	return q
}

// JobFrom reads the arguments of a gocraft/work job. A job whose arguments
// name no event (webhook_id missing or not a uuid, an argument missing or
// of the wrong type) gives a *MalformedError. The traceparent argument is
// optional, and ignored unless a string.
func JobFrom(wj *work.Job) (Job, error) {
	j := Job{
		WebhookID: wj.ArgString("webhook_id"),
		EventID:   wj.ArgString("event_id"),
		EventType: wj.ArgString("event_type"),
	}
	j.Traceparent, _ = wj.Args[traceparentArg].(string)
	switch err := wj.ArgError(); {
	case err != nil:
		return j, &MalformedError{JobID: wj.ID, Reason: err.Error()}
	case j.WebhookID == "":
		return j, &MalformedError{JobID: wj.ID, Reason: "no webhook_id"}
	case !validUUID(j.WebhookID):
		return j, &MalformedError{JobID: wj.ID, Reason: fmt.Sprintf("webhook_id %.40q is not a uuid", j.WebhookID)}
	}
	return j, nil
}

// MalformedError is a job whose arguments name no event. Running it again
// cannot help.
type MalformedError struct {
	JobID  string
	Reason string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("queue: job %s: %s", e.JobID, e.Reason)
}

// validUUID reports whether s is a uuid in the canonical form the services
// write (8-4-4-4-12 hex digits).
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// ListKey is the Redis list that holds waiting process-webhook jobs
// (what an autoscaler watches): "<namespace>:jobs:process-webhook".
func ListKey(namespace string) string {
	return namespace + ":jobs:" + JobName
}

// NewPool returns a redigo pool for cfg with connect, read and write
// timeouts (redigo has none by default, and gocraft/work calls Get without a
// context) and at most maxActive connections. A connection asked for with
// GetContext is checked, dialled, authenticated and waited for within that
// context's deadline: a Redis that accepts connections but never answers
// costs a caller with a deadline no more than its deadline, and one without
// (gocraft/work) no more than a second a check and three a dial.
//
// With REDIS_SENTINEL_ADDRS the pool dials the master Sentinel names and
// keeps to it: a borrowed connection to an address Sentinel no longer
// names (asked in the background at most once a second, and only while
// connections are borrowed), whose ROLE is not master after a second idle,
// or that Redis answered READONLY, is closed and a new one dialled to the
// master. No borrower waits for a sentinel while a master is known: with
// every sentinel hung, the pool keeps to the master it knows.
func NewPool(cfg config.Redis, maxActive int) *redis.Pool {
	m := newMaster(cfg)
	opts := append(dialOptions(cfg), redis.DialReadTimeout(10*time.Second))
	return &redis.Pool{
		MaxActive:           maxActive,
		MaxIdle:             maxActive,
		IdleTimeout:         4 * time.Minute,
		Wait:                true,
		DialContext:         func(ctx context.Context) (redis.Conn, error) { return m.dial(ctx, opts) },
		TestOnBorrowContext: m.testOnBorrow,
	}
}

func dialOptions(cfg config.Redis) []redis.DialOption {
	opts := []redis.DialOption{
		redis.DialConnectTimeout(2 * time.Second),
		redis.DialWriteTimeout(5 * time.Second),
		redis.DialDatabase(cfg.DB),
	}
	if cfg.Password != "" {
		opts = append(opts, redis.DialPassword(cfg.Password))
	}
	return opts
}

// Subscriber opens connections for SUBSCRIBE to the master and, with
// Sentinel, tells where the master is now, so that a subscription can leave
// a master Sentinel no longer names (one that hangs rather than dies never
// fails the subscription by itself). Its connections have no read timeout
// (they wait for messages) and TCP keepalives every 30 s instead, so that a
// quiet subscription sends Redis no command.
type Subscriber struct {
	master *master
	opts   []redis.DialOption
}

// NewSubscriber returns a Subscriber for cfg; Close it when done.
func NewSubscriber(cfg config.Redis) *Subscriber {
	return &Subscriber{master: newMaster(cfg), opts: append(dialOptions(cfg), redis.DialKeepAlive(30*time.Second))}
}

// Dial connects to the master within ctx (and at most three seconds) and
// returns the connection and the master's address. With Sentinel the
// server's ROLE is checked, within the same bounds, before it is returned.
func (s *Subscriber) Dial(ctx context.Context) (redis.Conn, string, error) {
	c, err := s.master.dial(ctx, s.opts)
	if err != nil {
		return nil, "", err
	}
	if mc, ok := c.(*masterConn); ok {
		return c, mc.addr, nil
	}
	return c, s.master.fixed, nil
}

// UsesSentinel reports whether the master is found through Sentinel, and
// so may move.
func (s *Subscriber) UsesSentinel() bool { return s.master.sentinel != nil }

// Master asks Sentinel where the master is now (joining a question already
// in flight) and waits for the answer within ctx; without Sentinel it is
// REDIS_HOST:REDIS_PORT. It sends the master itself nothing.
func (s *Subscriber) Master(ctx context.Context) (string, error) { return s.master.current(ctx) }

// Close closes the connections to the sentinels.
func (s *Subscriber) Close() error { return s.master.close() }

// Ping checks that Redis answers within ctx.
func Ping(ctx context.Context, pool *redis.Pool) error {
	conn, err := pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = redis.DoContext(conn, ctx, "PING")
	return err
}

// Enqueuer puts process-webhook jobs on the queue.
type Enqueuer struct {
	namespace string
	pool      *redis.Pool
	mu        sync.Mutex
	knownAt   time.Time // when the job name was last registered in known_jobs
}

// NewEnqueuer returns an enqueuer for namespace.
func NewEnqueuer(namespace string, pool *redis.Pool) *Enqueuer {
	return &Enqueuer{namespace: namespace, pool: pool}
}

// Enqueue queues a job for the event unless one for it is already waiting
// (gocraft/work merges waiting copies). It reports whether a new job was
// added.
func (q *Enqueuer) Enqueue(ctx context.Context, j Job) (bool, error) {
	added, err := q.EnqueueMany(ctx, []Job{j})
	if err != nil {
		return false, err
	}
	return added[0], nil
}

// DeadKey is the sorted set of dead jobs.
func DeadKey(namespace string) string { return namespace + ":dead" }

// RetryKey is the sorted set of jobs waiting for their retry.
func RetryKey(namespace string) string { return namespace + ":retry" }

// TrimDead keeps only the newest keep jobs of the dead set (the event rows
// keep their error regardless) and returns how many it removed.
func TrimDead(ctx context.Context, pool *redis.Pool, namespace string, keep int) (n int, err error) {
	ctx, span := startRedis(ctx, "redis trim dead", "ZREMRANGEBYRANK", 1)
	defer func() { endRedis(span, err) }()
	conn, err := pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return redis.Int(redis.DoContext(conn, ctx, "ZREMRANGEBYRANK", DeadKey(namespace), 0, -keep-1))
}

// receive reads the next pipelined reply, waiting no longer than ctx allows
// (without a deadline, the connection's read timeout). A read that times out
// closes the connection, so that it never goes back to the pool with
// replies still owed (the pool would wait for them on Close).
func receive(ctx context.Context, conn redis.Conn) (any, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return conn.Receive()
	}
	return redis.ReceiveWithTimeout(conn, max(time.Until(dl), time.Millisecond))
}

// WakeChannel is the pub/sub channel on which EnqueueMany announces new
// jobs of namespace; worker pools subscribe to it to end their idle sleep.
func WakeChannel(namespace string) string { return namespace + ":wake" }
