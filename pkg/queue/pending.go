package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// HeartbeatFresh is how recent a worker pool's heartbeat (gocraft/work
// beats every 5 s) must be for the pool to count as alive.
const HeartbeatFresh = 30 * time.Second

// retryScanCount is how many retry-set entries one ZSCAN asks for.
const retryScanCount = 1000

// Pending reports, per job, whether a process-webhook job for the same
// event (the same webhook_id) is waiting, in progress in a live worker pool,
// or waiting for a retry. It waits for Redis no longer than ctx allows.
//
// It sends one MGET of the jobs' unique keys, which every job queued by
// EnqueueMany or gocraft/work's EnqueueUnique holds while it waits. Only
// when some job is not waiting does it look further: the set of worker
// pools (one round trip), then the in-progress lists of the pools with a
// fresh heartbeat and the start of the retry set (one round trip), then the
// rest of the retry set, retryScanCount entries a round trip, while some job
// is still not found. A job in the in-progress list of a pool whose
// heartbeat is stale belongs to a killed worker, and is reported not
// pending: gocraft/work's dead-pool reaper requeues it only every ten
// minutes or so.
//
// Some waiting jobs hold no unique key: those gocraft/work moved back to
// the queue from the retry set or from a dead pool, and those waiting for
// over a day (the key's lifetime). Pending reports them not pending, so a
// caller that queues them again makes a second copy. That is harmless: the
// worker is idempotent, and whichever copy runs second finds its event
// processed.
func (q *Enqueuer) Pending(ctx context.Context, jobs []Job) ([]bool, error) {
	if len(jobs) == 0 {
		return []bool{}, nil
	}
	ctx, span := startRedis(ctx, "redis pending", "MGET", len(jobs))
	pending, err := q.pending(ctx, jobs)
	endRedis(span, err)
	return pending, err
}

// pending is Pending's lookups.
func (q *Enqueuer) pending(ctx context.Context, jobs []Job) ([]bool, error) {
	pending := make([]bool, len(jobs))
	conn, err := q.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: pending: %w", err)
	}
	defer conn.Close()
	keys := make([]any, len(jobs))
	for i, j := range jobs {
		keys[i] = uniqueKey(q.namespace, j.Args())
	}
	values, err := redis.Values(redis.DoContext(conn, ctx, "MGET", keys...))
	if err != nil {
		return nil, fmt.Errorf("queue: pending: %w", err)
	}
	if len(values) != len(jobs) {
		return nil, fmt.Errorf("queue: pending: MGET answered %d values for %d keys", len(values), len(jobs))
	}
	l := lookup{pending: pending, missing: map[string][]int{}}
	for i, v := range values {
		if v != nil {
			pending[i] = true
			continue
		}
		l.missing[jobs[i].WebhookID] = append(l.missing[jobs[i].WebhookID], i)
	}
	if len(l.missing) == 0 {
		return pending, nil
	}
	if err := q.lookRunning(ctx, conn, &l); err != nil {
		return nil, fmt.Errorf("queue: pending: %w", err)
	}
	return pending, nil
}

// lookup is what Pending has yet to find: the indexes of the jobs not
// found waiting, by webhook id.
type lookup struct {
	pending []bool
	missing map[string][]int
}

// see marks pending the jobs of the event whose job is rawJob.
func (l *lookup) see(rawJob []byte) {
	var j struct {
		Args struct {
			WebhookID string `json:"webhook_id"`
		} `json:"args"`
	}
	if json.Unmarshal(rawJob, &j) != nil {
		return
	}
	for _, i := range l.missing[j.Args.WebhookID] {
		l.pending[i] = true
	}
	delete(l.missing, j.Args.WebhookID)
}

// lookRunning looks for l's jobs among those in progress in a live pool and
// those in the retry set, and stops once it has found them all. The
// in-progress lists are read before the retry set, in one round trip, so a
// job that fails meanwhile (gocraft/work moves it from one to the other in
// one transaction) is seen in one or the other.
func (q *Enqueuer) lookRunning(ctx context.Context, conn redis.Conn, l *lookup) error {
	pools, err := redis.Strings(redis.DoContext(conn, ctx, "SMEMBERS", q.namespace+":worker_pools"))
	if err != nil {
		return err
	}
	for _, id := range pools {
		if err := conn.Send("HGET", q.namespace+":worker_pools:"+id, "heartbeat_at"); err != nil {
			return err
		}
		if err := conn.Send("LRANGE", inProgressKey(q.namespace, id), 0, -1); err != nil {
			return err
		}
	}
	if err := conn.Send("ZSCAN", RetryKey(q.namespace), "0", "COUNT", retryScanCount); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return err
	}
	for range pools {
		beat, err := redis.Int64(receive(ctx, conn))
		if err != nil && err != redis.ErrNil {
			return err
		}
		running, err := redis.ByteSlices(receive(ctx, conn))
		if err != nil {
			return err
		}
		if time.Since(time.Unix(beat, 0)) >= HeartbeatFresh {
			continue // a dead pool (or one without a heartbeat)
		}
		for _, raw := range running {
			l.see(raw)
		}
	}
	reply, err := receive(ctx, conn)
	for {
		if err != nil {
			return err
		}
		cursor, members, err := zscanReply(reply)
		if err != nil {
			return err
		}
		for i := 0; i < len(members); i += 2 { // member, score, member, score…
			l.see(members[i])
		}
		if cursor == "0" || len(l.missing) == 0 {
			return nil
		}
		reply, err = redis.DoContext(conn, ctx, "ZSCAN", RetryKey(q.namespace), cursor, "COUNT", retryScanCount)
	}
}

// zscanReply splits a ZSCAN reply into the next cursor and the members and
// scores.
func zscanReply(reply any) (string, [][]byte, error) {
	parts, err := redis.Values(reply, nil)
	if err != nil {
		return "", nil, err
	}
	if len(parts) != 2 {
		return "", nil, fmt.Errorf("ZSCAN answered %d parts, want 2", len(parts))
	}
	cursor, err := redis.String(parts[0], nil)
	if err != nil {
		return "", nil, err
	}
	members, err := redis.ByteSlices(parts[1], nil)
	return cursor, members, err
}

// inProgressKey is the list of process-webhook jobs a worker pool is running.
func inProgressKey(namespace, poolID string) string {
	return ListKey(namespace) + ":" + poolID + ":inprogress"
}
