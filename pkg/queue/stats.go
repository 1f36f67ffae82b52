package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Stats are the sizes of a namespace's job sets, for metrics.
type Stats struct {
	Waiting    int64 // process-webhook jobs waiting
	Retrying   int64 // jobs waiting for a retry
	Dead       int64 // jobs in the dead set
	PoolsAlive int64 // worker pools with a heartbeat within HeartbeatFresh
}

// ReadStats reads Stats in two pipelined round trips, waiting for Redis no
// longer than ctx allows.
func ReadStats(ctx context.Context, pool *redis.Pool, namespace string) (Stats, error) {
	var s Stats
	conn, err := pool.GetContext(ctx)
	if err != nil {
		return s, fmt.Errorf("queue: stats: %w", err)
	}
	defer conn.Close()
	_ = conn.Send("LLEN", ListKey(namespace))
	_ = conn.Send("ZCARD", RetryKey(namespace))
	_ = conn.Send("ZCARD", DeadKey(namespace))
	_ = conn.Send("SMEMBERS", namespace+":worker_pools")
	if err := conn.Flush(); err != nil {
		return s, fmt.Errorf("queue: stats: %w", err)
	}
	for _, n := range []*int64{&s.Waiting, &s.Retrying, &s.Dead} {
		if *n, err = redis.Int64(receive(ctx, conn)); err != nil {
			return s, fmt.Errorf("queue: stats: %w", err)
		}
	}
	pools, err := redis.Strings(receive(ctx, conn))
	if err != nil || len(pools) == 0 {
		return s, err
	}
	for _, id := range pools {
		_ = conn.Send("HGET", namespace+":worker_pools:"+id, "heartbeat_at")
	}
	if err := conn.Flush(); err != nil {
		return s, fmt.Errorf("queue: stats: %w", err)
	}
	for range pools {
		beat, err := redis.Int64(receive(ctx, conn))
		if err != nil && err != redis.ErrNil {
			return s, fmt.Errorf("queue: stats: %w", err)
		}
		if err == nil && time.Since(time.Unix(beat, 0)) < HeartbeatFresh {
			s.PoolsAlive++
		}
	}
	return s, nil
}
