package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
)

// enqueueUnique is gocraft/work v0.5.1's own unique-enqueue script: push the
// job only if its unique key could be set.
var enqueueUnique = redis.NewScript(2, `
if redis.call('set', KEYS[2], '1', 'NX', 'EX', '86400') then
  redis.call('lpush', KEYS[1], ARGV[1])
  return 'ok'
end
return 'dup'
`)

// EnqueueMany queues jobs, unique per event (a copy still waiting is
// merged), in one pipelined round trip to Redis. It writes the
// same keys and job JSON as gocraft/work's EnqueueUnique, so jobs from
// either merge with each other, and the worker drops the unique key when it
// takes the job (a test holds it to that). It reports, per job, whether a new
// job was added. It waits for Redis no longer than ctx allows.
//
// In the same round trip it publishes on WakeChannel, so that idle worker
// pools take the jobs at once rather than at their next poll.
func (q *Enqueuer) EnqueueMany(ctx context.Context, jobs []Job) ([]bool, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	ctx, span := startRedis(ctx, "redis enqueue", "EVALSHA", len(jobs))
	added, err := q.enqueueMany(ctx, jobs)
	endRedis(span, err)
	return added, err
}

// enqueueMany is EnqueueMany's round trip.
func (q *Enqueuer) enqueueMany(ctx context.Context, jobs []Job) ([]bool, error) {
	conn, err := q.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: enqueue: %w", err)
	}
	defer conn.Close()
	// gocraft/work registers job names it has seen; refresh it like it does.
	q.mu.Lock()
	refresh := time.Since(q.knownAt) > 5*time.Minute
	q.mu.Unlock()
	if refresh {
		if err := conn.Send("SADD", q.namespace+":known_jobs", JobName); err != nil {
			return nil, fmt.Errorf("queue: enqueue: %w", err)
		}
	}
	now := time.Now().Unix()
	for _, j := range jobs {
		if j.WebhookID == "" {
			return nil, fmt.Errorf("queue: enqueue %s: no webhook_id", j.EventID)
		}
		args := j.Args()
		raw, err := json.Marshal(work.Job{Name: JobName, ID: newJobID(), EnqueuedAt: now, Args: args, Unique: true})
		if err != nil {
			return nil, err
		}
		if err := enqueueUnique.Send(conn, ListKey(q.namespace), uniqueKey(q.namespace, args), raw); err != nil {
			return nil, fmt.Errorf("queue: enqueue: %w", err)
		}
	}
	if err := conn.Send("PUBLISH", WakeChannel(q.namespace), ""); err != nil {
		return nil, fmt.Errorf("queue: enqueue: %w", err)
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("queue: enqueue: %w", err)
	}
	if refresh {
		if _, err := receive(ctx, conn); err != nil {
			return nil, fmt.Errorf("queue: enqueue: %w", err)
		}
		q.mu.Lock()
		q.knownAt = time.Now()
		q.mu.Unlock()
	}
	added := make([]bool, len(jobs))
	var firstErr error
	for i := range jobs {
		reply, err := redis.String(receive(ctx, conn))
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("queue: enqueue %s: %w", jobs[i].EventID, err)
		}
		if err != nil && conn.Err() != nil {
			break // the connection is gone: no other reply will come
		}
		added[i] = reply == "ok"
	}
	if conn.Err() == nil {
		// A lost wake-up costs latency only: the pools poll all the same.
		_, _ = receive(ctx, conn)
	}
	return added, firstErr
}

// uniqueKey is gocraft/work's unique-job key: the arguments JSON-encoded
// (sorted keys, trailing newline) after "<ns>:unique:<job>:".
func uniqueKey(namespace string, args map[string]any) string {
	var buf bytes.Buffer
	buf.WriteString(namespace + ":unique:" + JobName + ":")
	_ = json.NewEncoder(&buf).Encode(args)
	return buf.String()
}

func newJobID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
